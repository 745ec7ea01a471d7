//! Decoding guest instructions for reports (iced-x86, GNU assembler syntax).

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction};

/// Decodes the first instruction of `bytes` at `rip` in `bitness`-bit mode into its length
/// and assembly text; `None` if the bytes do not form a valid instruction.
pub fn decode_one(bytes: &[u8], bitness: u32, rip: u64) -> Option<(usize, String)> {
    let bitness = match bitness {
        16 | 32 | 64 => bitness,
        _ => 64,
    };
    let mut decoder = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    if !decoder.can_decode() {
        return None;
    }
    decoder.decode_out(&mut insn);
    if insn.is_invalid() {
        return None;
    }
    let mut out = String::new();
    GasFormatter::new().format(&insn, &mut out);
    Some((insn.len(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_vex_andn() {
        // andn %rax,%rbx,%rcx
        let bytes = [0xc4, 0xe2, 0xe0, 0xf2, 0xc8];
        let (len, asm) = decode_one(&bytes, 64, 0x1000).unwrap();
        assert!(asm.starts_with("andn"), "{asm}");
        assert_eq!(len, 5);
    }

    #[test]
    fn invalid_bytes_do_not_decode() {
        assert_eq!(decode_one(&[0x0f, 0xff], 64, 0), None);
        assert_eq!(decode_one(&[], 64, 0), None);
    }

    #[test]
    fn decodes_real_mode() {
        assert_eq!(
            decode_one(&[0xfa, 0x90], 16, 0),
            Some((1, "cli".to_string()))
        );
    }
}
