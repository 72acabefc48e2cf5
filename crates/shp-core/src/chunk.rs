//! Content-defined chunking of file contents: FastCDC (2020 variant), 16/64/256 KiB.
//!
//! The crate version is pinned exactly in the workspace: its cut points are part of the DAG schema.

use crate::error::{Error, Result};
use std::io::Read;

pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;

/// Cuts `size` bytes from `r` into chunks, calling `f` with each in order. Memory use is bounded
/// by the largest chunk, whatever `size` is.
pub fn chunk_stream(r: &mut dyn Read, size: u64, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    if size <= MIN_CHUNK as u64 {
        // FastCDC never cuts below the minimum: one chunk, read without the chunker's buffers.
        let mut buf = Vec::with_capacity(size as usize);
        r.take(size).read_to_end(&mut buf)?;
        if buf.len() as u64 != size {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if size > 0 {
            f(&buf)?;
        }
        return Ok(());
    }
    let mut got = 0u64;
    for chunk in fastcdc::v2020::StreamCDC::new(r.take(size), MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        let chunk = chunk.map_err(|e| Error::Io(e.into()))?;
        got += chunk.length as u64;
        f(&chunk.data)?;
    }
    if got != size {
        return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_stable_and_bounded() {
        let mut x: u64 = 42;
        let data: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut sizes = Vec::new();
        chunk_stream(&mut &data[..], data.len() as u64, &mut |c| {
            sizes.push(c.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        assert!(sizes[..sizes.len() - 1]
            .iter()
            .all(|&s| (MIN_CHUNK as usize..=MAX_CHUNK as usize).contains(&s)));
        // Inserting bytes at the front only changes the first chunks.
        let mut shifted = b"prefix".to_vec();
        shifted.extend_from_slice(&data);
        let mut sizes2 = Vec::new();
        chunk_stream(&mut &shifted[..], shifted.len() as u64, &mut |c| {
            sizes2.push(c.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes[3..], sizes2[3..]);
    }
}
