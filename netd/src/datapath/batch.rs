//! Reading a whole hash map with `BPF_MAP_LOOKUP_BATCH`: a few syscalls per thousand entries
//! instead of two per entry (aya 0.14 iterates key by key). The translation table holds up to
//! hundreds of thousands of entries and is read by every collection and `netd nat ls`.
#![expect(unsafe_code, reason = "BPF_MAP_LOOKUP_BATCH has no wrapper in aya 0.14")]

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::MapData;
use bytemuck::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Every (key, value) of the hash map `map`, read `chunk` entries per call. The map keeps
/// changing meanwhile: entries added or removed during the walk may be missed or seen.
pub fn lookup_all<K: Pod, V: Pod>(map: &MapData, chunk: usize) -> io::Result<Vec<(K, V)>> {
    let fd = u32::try_from(map.fd().as_fd().as_raw_fd()).map_err(io::Error::other)?;
    let mut chunk = chunk.max(1);
    let mut out = Vec::new();
    // The batch token of a hash map is a bucket index; a key-sized buffer is always enough.
    let token_len = size_of::<K>().max(8);
    let (mut in_token, mut out_token) = (vec![0u8; token_len], vec![0u8; token_len]);
    let mut first = true;
    loop {
        let mut keys: Vec<K> = vec![K::zeroed(); chunk];
        let mut values: Vec<V> = vec![V::zeroed(); chunk];
        let mut attr = [0u8; 128];
        let in_ptr = if first { 0 } else { in_token.as_ptr() as u64 };
        attr[0..8].copy_from_slice(&in_ptr.to_ne_bytes());
        attr[8..16].copy_from_slice(&(out_token.as_mut_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(keys.as_mut_ptr() as u64).to_ne_bytes());
        attr[24..32].copy_from_slice(&(values.as_mut_ptr() as u64).to_ne_bytes());
        attr[32..36].copy_from_slice(&u32::try_from(chunk).map_err(io::Error::other)?.to_ne_bytes());
        attr[36..40].copy_from_slice(&fd.to_ne_bytes());
        // SAFETY: `attr` is a zero-padded `union bpf_attr`; every pointer in it refers to a live
        // buffer of the size the kernel writes (`count` keys and values, a token).
        let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, attr.as_mut_ptr(), attr.len()) };
        let err = (rc < 0).then(io::Error::last_os_error);
        if let Some(e) = &err {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                // One bucket holds more than `chunk` entries: read it again with more room.
                chunk *= 4;
                continue;
            }
        }
        let count = u32::from_ne_bytes(attr[32..36].try_into().expect("4 bytes")) as usize;
        out.extend(keys.into_iter().zip(values).take(count));
        match err {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(e) => return Err(e),
        }
        std::mem::swap(&mut in_token, &mut out_token);
        first = false;
    }
}
