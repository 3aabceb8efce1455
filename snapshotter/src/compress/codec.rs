//! One member in, its compressed bytes out: the gzip member and zstd frame encoders, each keeping
//! its compression state across members (reset, never carried over: a member's bytes depend on
//! its own input only, which the thread-count tests check).

use std::io;

use flate2::{Crc, FlushCompress, Status};

use super::{Compression, GZIP_LEVEL, ZSTD_LEVEL};

/// The fixed gzip member header (RFC 1952 §2.3): magic, CM=8 (deflate), FLG=0 (no name, comment,
/// extra or header CRC), MTIME=0, XFL as `flate2` sets it for the level, OS=255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, gzip_xfl(GZIP_LEVEL), 255];

const fn gzip_xfl(level: u32) -> u8 {
    if level >= 9 {
        2
    } else if level <= 1 {
        4
    } else {
        0
    }
}

/// A per-thread member encoder.
pub(crate) enum MemberCodec {
    Gzip(Box<flate2::Compress>),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
    Uncompressed,
}

impl MemberCodec {
    pub(crate) fn new(compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => MemberCodec::Gzip(Box::new(flate2::Compress::new(
                flate2::Compression::new(GZIP_LEVEL),
                false,
            ))),
            Compression::Zstd => {
                use zstd::zstd_safe::CParameter;
                let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
                c.set_parameter(CParameter::ChecksumFlag(true))?;
                c.set_parameter(CParameter::ContentSizeFlag(true))?;
                c.set_parameter(CParameter::DictIdFlag(false))?;
                MemberCodec::Zstd(Box::new(c))
            }
            Compression::Uncompressed => MemberCodec::Uncompressed,
        })
    }

    /// Compress `input` as one member, replacing the contents of `out`.
    pub(crate) fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        match self {
            MemberCodec::Gzip(deflate) => gzip_member(deflate, input, out),
            MemberCodec::Zstd(c) => {
                out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                c.compress_to_buffer(input, out)?;
                Ok(())
            }
            MemberCodec::Uncompressed => {
                out.extend_from_slice(input);
                Ok(())
            }
        }
    }
}

fn gzip_member(deflate: &mut flate2::Compress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    // Deflate's worst case is a few bytes per 16 KiB stored block; start with room for that.
    out.reserve(GZIP_HEADER.len() + input.len() + input.len() / 1024 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    deflate.reset();
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(&input[consumed..], out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        consumed += (deflate.total_in() - before) as usize;
        if status == Status::StreamEnd {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input size modulo 2^32 (RFC 1952 §2.3.1).
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_member_matches_flate2_gz_builder() {
        let input: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
            .collect();
        let mut codec = MemberCodec::new(Compression::Gzip).unwrap();
        let mut ours = Vec::new();
        codec.encode(b"warm the state up first", &mut ours).unwrap();
        codec.encode(&input, &mut ours).unwrap();
        let mut theirs = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
        io::Write::write_all(&mut theirs, &input).unwrap();
        assert_eq!(ours, theirs.finish().unwrap());
    }

    #[test]
    fn zstd_member_round_trips() {
        let input = b"hello hello hello hello".repeat(1000);
        let mut codec = MemberCodec::new(Compression::Zstd).unwrap();
        let mut out = Vec::new();
        codec.encode(&input, &mut out).unwrap();
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&out[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input);
    }
}
