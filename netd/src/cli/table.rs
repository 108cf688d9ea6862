//! Column output like docker's (Go's tabwriter with minwidth 10, padding 3).

use std::fmt::Write as _;

/// Formats rows into aligned columns; the last column is not padded.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths = vec![0usize; cols];
    for (i, h) in header.iter().enumerate() {
        widths[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let widths: Vec<usize> = widths.into_iter().map(|w| (w + 3).max(10)).collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Natural ordering ("net2" < "net10"), as docker sorts names.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut left, mut right) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (left.peek().copied(), right.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(lc), Some(rc)) if lc.is_ascii_digit() && rc.is_ascii_digit() => {
                let take = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut s = String::new();
                    while let Some(ch) = it.peek().copied().filter(char::is_ascii_digit) {
                        s.push(ch);
                        it.next();
                    }
                    s
                };
                let (lnum, rnum) = (take(&mut left), take(&mut right));
                let (lnum, rnum) = (lnum.trim_start_matches('0'), rnum.trim_start_matches('0'));
                let ord = lnum.len().cmp(&rnum.len()).then_with(|| lnum.cmp(rnum));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            (Some(lc), Some(rc)) => {
                if lc != rc {
                    return lc.cmp(&rc);
                }
                left.next();
                right.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_like_docker() {
        let s = render(
            &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            &[vec!["2ac6093c3709".into(), "bridge".into(), "bridge".into(), "local".into()]],
        );
        assert_eq!(s, "NETWORK ID     NAME      DRIVER    SCOPE\n2ac6093c3709   bridge    bridge    local\n");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["net10", "net2", "bridge", "net1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["bridge", "net1", "net2", "net10"]);
    }
}
