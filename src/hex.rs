//! Lowercase hex for the ids pulse writes: trace and span ids, request ids,
//! and the ids of exported spans; and `%XX` escapes read back.

/// Lowercase hex of `bytes` into `out` (twice as long): trace and span
/// ids, request ids, and the ids of exported spans.
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out_eights = out.chunks_exact_mut(8);
    let mut fours = bytes.chunks_exact(4);
    for (eight, four) in (&mut out_eights).zip(&mut fours) {
        let four: [u8; 4] = four.try_into().unwrap_or_default();
        eight.copy_from_slice(&hex_of_u32(u32::from_be_bytes(four)));
    }
    let rest = out_eights.into_remainder();
    for (pair, byte) in rest.chunks_exact_mut(2).zip(fours.remainder()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// The eight lowercase hex digits of `value`, all nibbles at once: every
/// request writes 40 bytes of ids in hex, and a table lookup per digit cost
/// more than the rest of the id generation.
fn hex_of_u32(value: u32) -> [u8; 8] {
    // Spread the nibbles out, one per byte; byte i holds nibble i.
    let mut x = u64::from(value);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more, which then needs a letter:
    // '0' + n for a digit, 'a' + n - 10 = '0' + n + 39 for a letter.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

/// `text` with each `%XX` replaced by the byte it stands for; None for a
/// `%` not followed by two hex digits. The OpenTelemetry variables
/// (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`) percent-encode
/// their values.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_in_order_for_every_length() {
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for length in 0..=20 {
            for start in [0, 7, 100, 250, 490] {
                let input = &bytes[start..start + length];
                let mut out = vec![b'?'; length * 2];
                write_hex(&mut out, input);
                let expected: String = input.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(String::from_utf8(out).unwrap(), expected);
            }
        }
    }
}
