//! Reading the `.BTF` blob: header, type section, string section
//! (`include/uapi/linux/btf.h`). Every read is bounds-checked; anything the format does not
//! allow is a [`BtfError`].

use super::types::{Enumerator, Kind, Member, Param, SecVar, Type};
use super::BtfError;

/// `BTF_MAGIC` (little-endian).
const MAGIC: u16 = 0xeb9f;

/// The type section's and string section's bytes, from the header.
pub(super) fn sections(data: &[u8]) -> Result<(&[u8], &[u8]), BtfError> {
    let r = Reader { data };
    let magic = r.u16(0)?;
    if magic != MAGIC {
        return Err(if magic == MAGIC.swap_bytes() {
            BtfError::BigEndian
        } else {
            BtfError::BadMagic(magic)
        });
    }
    let version = data.get(2).copied().ok_or(BtfError::Truncated("header"))?;
    if version != 1 {
        return Err(BtfError::Version(version));
    }
    let hdr_len = r.u32(4)? as usize;
    if hdr_len < 24 {
        return Err(BtfError::Truncated("header"));
    }
    let body = data.get(hdr_len..).ok_or(BtfError::Truncated("header"))?;
    let slice = |off: u32, len: u32, what: &'static str| {
        let start = off as usize;
        let end = start
            .checked_add(len as usize)
            .ok_or(BtfError::Truncated(what))?;
        body.get(start..end).ok_or(BtfError::Truncated(what))
    };
    let types = slice(r.u32(8)?, r.u32(12)?, "type section")?;
    let strings = slice(r.u32(16)?, r.u32(20)?, "string section")?;
    Ok((types, strings))
}

/// Every type in the type section, in ID order starting at 1.
pub(super) fn types(types: &[u8], strings: &[u8]) -> Result<Vec<Type>, BtfError> {
    let r = Reader { data: types };
    let name = |off: u32| -> Result<String, BtfError> {
        let s = strings
            .get(off as usize..)
            .ok_or(BtfError::BadString(off))?;
        let end = s
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString(off))?;
        Ok(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < types.len() {
        let id = out.len() + 1;
        let name_off = r.u32(at)?;
        let info = r.u32(at + 4)?;
        let size_or_type = r.u32(at + 8)?;
        at += 12;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 != 0;
        let kind_no = (info >> 24) & 0x1f;
        // Each kind's trailing records: (count, bytes each).
        let members = |at: usize, signed_off: bool| -> Result<Vec<Member>, BtfError> {
            (0..vlen)
                .map(|i| {
                    let m = at + 12 * i;
                    let off = r.u32(m + 8)?;
                    let (bit_offset, bitfield_size) = if signed_off {
                        (off & 0x00ff_ffff, off >> 24)
                    } else {
                        (off, 0)
                    };
                    Ok(Member {
                        name: name(r.u32(m)?)?,
                        ty: r.u32(m + 4)?,
                        bit_offset,
                        bitfield_size,
                    })
                })
                .collect()
        };
        let (kind, extra) = match kind_no {
            1 => {
                let enc = r.u32(at)?;
                let e = enc >> 24;
                let kind = Kind::Int {
                    size: size_or_type,
                    bits: (enc & 0xff) as u8,
                    offset: ((enc >> 16) & 0xff) as u8,
                    signed: e & 1 != 0,
                    char: e & 2 != 0,
                    bool: e & 4 != 0,
                };
                (kind, 4)
            }
            2 => (
                Kind::Ptr {
                    target: size_or_type,
                },
                0,
            ),
            3 => (
                Kind::Array {
                    elem: r.u32(at)?,
                    index: r.u32(at + 4)?,
                    len: r.u32(at + 8)?,
                },
                12,
            ),
            4 => (
                Kind::Struct {
                    size: size_or_type,
                    members: members(at, kind_flag)?,
                },
                12 * vlen,
            ),
            5 => (
                Kind::Union {
                    size: size_or_type,
                    members: members(at, kind_flag)?,
                },
                12 * vlen,
            ),
            6 => {
                let values = (0..vlen)
                    .map(|i| {
                        let raw = r.u32(at + 8 * i + 4)?;
                        let value = if kind_flag {
                            i64::from(raw as i32)
                        } else {
                            i64::from(raw)
                        };
                        Ok(Enumerator {
                            name: name(r.u32(at + 8 * i)?)?,
                            value,
                        })
                    })
                    .collect::<Result<_, BtfError>>()?;
                let kind = Kind::Enum {
                    size: size_or_type,
                    signed: kind_flag,
                    values,
                };
                (kind, 8 * vlen)
            }
            7 => (Kind::Fwd { union_: kind_flag }, 0),
            8 => (
                Kind::Typedef {
                    target: size_or_type,
                },
                0,
            ),
            9 => (
                Kind::Volatile {
                    target: size_or_type,
                },
                0,
            ),
            10 => (
                Kind::Const {
                    target: size_or_type,
                },
                0,
            ),
            11 => (
                Kind::Restrict {
                    target: size_or_type,
                },
                0,
            ),
            12 => (
                Kind::Func {
                    proto: size_or_type,
                    linkage: vlen as u16,
                },
                0,
            ),
            13 => {
                let params = (0..vlen)
                    .map(|i| {
                        Ok(Param {
                            name: name(r.u32(at + 8 * i)?)?,
                            ty: r.u32(at + 8 * i + 4)?,
                        })
                    })
                    .collect::<Result<_, BtfError>>()?;
                (
                    Kind::FuncProto {
                        ret: size_or_type,
                        params,
                    },
                    8 * vlen,
                )
            }
            14 => (
                Kind::Var {
                    ty: size_or_type,
                    linkage: r.u32(at)?,
                },
                4,
            ),
            15 => {
                let vars = (0..vlen)
                    .map(|i| {
                        let v = at + 12 * i;
                        Ok(SecVar {
                            ty: r.u32(v)?,
                            offset: r.u32(v + 4)?,
                            size: r.u32(v + 8)?,
                        })
                    })
                    .collect::<Result<_, BtfError>>()?;
                (
                    Kind::Datasec {
                        size: size_or_type,
                        vars,
                    },
                    12 * vlen,
                )
            }
            16 => (Kind::Float { size: size_or_type }, 0),
            17 => (
                Kind::DeclTag {
                    target: size_or_type,
                    component: r.u32(at)? as i32,
                },
                4,
            ),
            18 => (
                Kind::TypeTag {
                    target: size_or_type,
                },
                0,
            ),
            19 => {
                let values = (0..vlen)
                    .map(|i| {
                        let e = at + 12 * i;
                        let v = u64::from(r.u32(e + 4)?) | u64::from(r.u32(e + 8)?) << 32;
                        Ok(Enumerator {
                            name: name(r.u32(e)?)?,
                            value: v as i64,
                        })
                    })
                    .collect::<Result<_, BtfError>>()?;
                let kind = Kind::Enum {
                    size: size_or_type,
                    signed: kind_flag,
                    values,
                };
                (kind, 12 * vlen)
            }
            other => {
                return Err(BtfError::UnknownKind {
                    id: id as u32,
                    kind: other,
                })
            }
        };
        at += extra;
        if at > types.len() {
            return Err(BtfError::Truncated("type section"));
        }
        out.push(Type {
            name: name(name_off)?,
            kind,
        });
    }
    Ok(out)
}

/// Bounds-checked little-endian reads.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u16(&self, off: usize) -> Result<u16, BtfError> {
        let b = self
            .data
            .get(off..off + 2)
            .ok_or(BtfError::Truncated("data"))?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, off: usize) -> Result<u32, BtfError> {
        let b = self
            .data
            .get(off..off.checked_add(4).ok_or(BtfError::Truncated("data"))?)
            .ok_or(BtfError::Truncated("type section"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}
