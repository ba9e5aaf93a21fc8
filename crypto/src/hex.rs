//! Lowercase hex, the one text form of keys, ids, hashes and signatures in TierMesh.

/// `bytes` as lowercase hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from `2 * N` hex digits (either case), or `None`.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = decode(text)?;
    bytes.try_into().ok()
}

/// Bytes from an even number of hex digits (either case), or `None`.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let value = |digit: u8| char::from(digit).to_digit(16);
    digits
        .chunks_exact(2)
        .map(|pair| Some((value(pair[0])? << 4 | value(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(encode(&bytes), "000fa5ff");
        assert_eq!(decode("000FA5ff"), Some(bytes.to_vec()));
        assert_eq!(decode_array::<4>("000fa5ff"), Some(bytes));
        assert_eq!(decode_array::<3>("000fa5ff"), None);
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("+1"), None);
        assert_eq!(decode(""), Some(Vec::new()));
    }
}
