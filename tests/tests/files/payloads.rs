//! Upload payloads: just enough of each format for magic-byte sniffing, padded with bytes
//! derived from `seed` so that different uploads have different digests.

pub fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A PNG of exactly `len` bytes (at least 57): signature, IHDR, a private chunk of filler, IEND.
pub fn png_sized(seed: u64, len: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0];
    out.extend(png_chunk(b"IHDR", &ihdr));
    let iend = png_chunk(b"IEND", &[]);
    let fixed = out.len() + 12 + iend.len();
    assert!(len >= fixed, "a PNG needs at least {fixed} bytes");
    out.extend(png_chunk(b"lyCe", &filler(seed, len - fixed)));
    out.extend(iend);
    assert_eq!(out.len(), len);
    out
}

pub fn png(seed: u64) -> Vec<u8> {
    png_sized(seed, 2048)
}

pub fn pdf(seed: u64) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n".to_vec();
    out.extend_from_slice(format!("% filler {seed}\n").as_bytes());
    out.extend_from_slice(&filler(seed, 1500));
    out.extend_from_slice(b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    out
}

pub fn mp4(seed: u64) -> Vec<u8> {
    let mut out = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    out.extend_from_slice(&[0u8; 512]);
    out.extend_from_slice(&filler(seed, 1024));
    out
}

pub fn text(seed: u64) -> Vec<u8> {
    format!("Lecture notes {seed}\nConsensus needs a majority.\nClocks drift.\n").into_bytes()
}

pub fn elf() -> Vec<u8> {
    let mut out = b"\x7fELF\x02\x01\x01\0".to_vec();
    out.extend_from_slice(&[0u8; 256]);
    out
}

pub fn pe() -> Vec<u8> {
    let mut out = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    out.extend_from_slice(b"This program cannot be run in DOS mode.\r\r\n$");
    out.extend_from_slice(&[0u8; 200]);
    out
}

pub const SVG_CLEAN: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><rect width="1" height="1"/></svg>"#;
pub const SVG_SCRIPT: &str =
    r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>"#;
pub const SVG_ONLOAD: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="1" height="1"/></svg>"#;
