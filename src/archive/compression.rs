//! Compressed streams recognised by their first bytes, as moby's `archive.DetectCompression`
//! does for `docker load`, `docker build -` and `ADD` of a local archive: gzip (`1f 8b 08`),
//! bzip2 (`BZh`), xz (`fd 37 7a 58 5a 00`) and zstd (`28 b5 2f fd`); anything else is taken as
//! it is. Decoders read every member or frame (concatenated gzip members are one stream).
//!
//! Not responsible for: what the stream holds (a tar, a Dockerfile, a layer).

use std::io::{self, Read};

/// A stream's compression, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// Detect from the first bytes (at least 6 when the stream has them).
    pub fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if magic.starts_with(b"BZh") {
            Compression::Bzip2
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// Read the first bytes of `stream` (up to 8, fewer only at its end) to detect its
    /// compression; returns it with the bytes read, which the caller puts back in front.
    pub fn sniff<R: Read>(stream: &mut R) -> io::Result<(Self, Vec<u8>)> {
        let mut magic = [0u8; 8];
        let mut n = 0;
        while n < magic.len() {
            match stream.read(&mut magic[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((Self::detect(&magic[..n]), magic[..n].to_vec()))
    }

    /// `stream` (which still starts with the magic bytes) decompressed.
    pub fn decoder<R: Read>(self, stream: R) -> io::Result<Decoder<R>> {
        Ok(match self {
            Compression::None => Decoder::Plain(stream),
            Compression::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(stream)),
            Compression::Bzip2 => Decoder::Bzip2(bzip2::read::MultiBzDecoder::new(stream)),
            Compression::Xz => Decoder::Xz(liblzma::read::XzDecoder::new_multi_decoder(stream)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(stream)?),
        })
    }
}

/// A decompressing reader (`Send` when its stream is).
pub enum Decoder<R: Read> {
    Plain(R),
    Gzip(flate2::read::MultiGzDecoder<R>),
    Bzip2(bzip2::read::MultiBzDecoder<R>),
    Xz(liblzma::read::XzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, io::BufReader<R>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Bzip2(r) => r.read(buf),
            Decoder::Xz(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 7, 0]),
            Compression::None,
            "gzip is deflate (method 8) only, as in moby"
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"BZh91A"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(Compression::detect(b"{\"a\""), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn every_member_is_decoded() {
        use std::io::Write as _;
        let mut two = Vec::new();
        for part in [&b"one "[..], b"two"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            two.extend(e.finish().unwrap());
        }
        let mut out = String::new();
        Compression::detect(&two)
            .decoder(&two[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "one two");
    }
}
