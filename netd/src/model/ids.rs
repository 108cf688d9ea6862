//! Identifiers, names and timestamps in Docker's formats.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngExt as _;

/// A random 64-hex-digit id (256 bits), like Docker's network, endpoint and container ids.
/// Its short form (12 digits) is never all decimal digits, as Docker's: it is a sandbox's host
/// name, and a resolver takes an all-digit name for an address (`getent hosts 123456789012`
/// finds nothing, whatever `/etc/hosts` says).
pub fn new_id() -> String {
    loop {
        let bytes: [u8; 32] = rand::rng().random();
        let id = hex(&bytes);
        if usable_short_id(&id[..12]) {
            return id;
        }
    }
}

/// A random (version 4) UUID, as Docker's engine ID: `8-4-4-4-12` lowercase hex.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn usable_short_id(short: &str) -> bool {
    !short.bytes().all(|c| c.is_ascii_digit())
}

/// `n` random hex digits.
pub fn random_hex(n: usize) -> String {
    let mut s = new_id();
    s.truncate(n);
    s
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A MAC address as `02:42:ac:11:00:02`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Docker's MAC for an IPv4 address: `02:42:` + the four address bytes.
pub fn docker_mac(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A random locally administered unicast MAC in Docker's `02:42:` range.
pub fn random_mac() -> [u8; 6] {
    let b: [u8; 4] = rand::rng().random();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

/// Now as RFC 3339 with nanoseconds in UTC (`2026-11-29T16:14:18.123456789Z`).
pub fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_nanos())
}

fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Seconds since the epoch of a timestamp as [`now_rfc3339`] writes it
/// (`2017-06-30T09:20:41.715140335Z`; the fraction is optional and dropped).
pub fn unix_secs(rfc3339: &str) -> Option<i64> {
    let (date, time) = rfc3339.strip_suffix('Z')?.split_once('T')?;
    let mut dates = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (dates.next()?.ok()?, dates.next()?.ok()?, dates.next()?.ok()?);
    let whole = time.split_once('.').map_or(time, |(w, _)| w);
    let mut times = whole.splitn(3, ':').map(str::parse::<i64>);
    let (hour, min, sec) = (times.next()?.ok()?, times.next()?.ok()?, times.next()?.ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// (year, month, day), proleptic Gregorian, to days since 1970-01-01 (H. Hinnant's algorithm,
/// the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "confident",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "goofy",
    "happy",
    "hopeful",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "modest",
    "nice",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "albattani",
    "babbage",
    "bardeen",
    "bell",
    "boyd",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "fermat",
    "feynman",
    "galois",
    "gauss",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kalam",
    "keller",
    "kepler",
    "kirch",
    "knuth",
    "lamport",
    "lovelace",
    "maxwell",
    "meitner",
    "mirzakhani",
    "morse",
    "newton",
    "noether",
    "pascal",
    "perlman",
    "raman",
    "ritchie",
    "shannon",
    "thompson",
    "torvalds",
    "turing",
    "wiles",
    "wozniak",
    "yalow",
];

/// A Docker-style name (`laughing_fermat`) not in `taken`; a digit is appended after clashes.
pub fn generate_name(taken: impl Fn(&str) -> bool) -> String {
    let mut rng = rand::rng();
    for attempt in 0..64 {
        let a = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        let s = SURNAMES[rng.random_range(0..SURNAMES.len())];
        let name = if attempt < 8 { format!("{a}_{s}") } else { format!("{a}_{s}{}", rng.random_range(0..10)) };
        if !taken(&name) {
            return name;
        }
    }
    format!("sandbox_{}", random_hex(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_read_back_as_seconds() {
        for secs in [0, 951_782_400, 1_498_814_441, 1_796_000_000, 4_102_444_800] {
            assert_eq!(unix_secs(&rfc3339(secs, 715_140_335)), Some(i64::try_from(secs).unwrap()), "{secs}");
        }
        assert_eq!(unix_secs("2026-12-02T04:09:13Z"), Some(1_796_184_553));
        for bad in ["", "2026-12-02", "2026-13-02T00:00:00Z", "2026-12-02T24:00:00Z", "2026-12-02T00:00:00"] {
            assert_eq!(unix_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_498_814_441, 715_140_335), "2017-06-30T09:20:41.715140335Z");
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn short_ids_are_never_all_digits() {
        assert!(!super::usable_short_id("123456789012"));
        assert!(super::usable_short_id("12345678901a"));
        assert!((0..2000).all(|_| super::usable_short_id(&super::new_id()[..12])));
    }

    #[test]
    fn ids_and_macs() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format_mac(docker_mac("172.17.0.3".parse().unwrap())), "02:42:ac:11:00:03");
        assert_eq!(parse_mac("02:42:AC:11:00:03"), Some([2, 0x42, 0xac, 0x11, 0, 3]));
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:03"), None);
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let n = generate_name(|_| false);
        assert!(n.contains('_'));
        let m = generate_name(|s| s == n);
        assert_ne!(m, n);
    }
}
