//! Go's `encoding/pem.Decode`, faithfully: kube-apiserver's certificate-chain and trust-bundle
//! rules are defined by what it finds (junk between blocks is skipped, malformed blocks are
//! passed over, headers are reported), so a stricter or laxer parser would change verdicts.

use base64::Engine as _;

/// One PEM block as Go's `pem.Block` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: String,
    pub headers: Vec<(String, String)>,
    pub bytes: Vec<u8>,
}

const PEM_START: &[u8] = b"\n-----BEGIN ";
const PEM_END: &[u8] = b"\n-----END ";
const PEM_END_OF_LINE: &[u8] = b"-----";

fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b' ' | b'\t' | b'\r') {
        end -= 1;
    }
    (&line[..end], rest)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's base64.StdEncoding.Decode: padding required, `\r` and `\n` ignored.
fn std_decode(data: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// `pem.Decode`: the next block and the rest, or `None` when no further block parses.
pub fn decode(data: &[u8]) -> Option<(Block, &[u8])> {
    let mut rest = data;
    loop {
        if rest.starts_with(&PEM_START[1..]) {
            rest = &rest[PEM_START.len() - 1..];
        } else if let Some(i) = find(rest, PEM_START) {
            rest = &rest[i + PEM_START.len()..];
        } else {
            return None;
        }
        let (type_line, after) = get_line(rest);
        rest = after;
        if !type_line.ends_with(PEM_END_OF_LINE) {
            continue;
        }
        let type_line = &type_line[..type_line.len() - PEM_END_OF_LINE.len()];
        let mut headers = Vec::new();
        loop {
            if rest.is_empty() {
                return None;
            }
            let (line, next) = get_line(rest);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                break;
            };
            let key = String::from_utf8_lossy(&line[..colon]).trim().to_string();
            let val = String::from_utf8_lossy(&line[colon + 1..])
                .trim()
                .to_string();
            headers.push((key, val));
            rest = next;
        }
        let (end_index, end_trailer_index) =
            if headers.is_empty() && rest.starts_with(&PEM_END[1..]) {
                (0, PEM_END.len() - 1)
            } else {
                match find(rest, PEM_END) {
                    Some(i) => (i, i + PEM_END.len()),
                    None => continue,
                }
            };
        let end_trailer = &rest[end_trailer_index..];
        let trailer_len = type_line.len() + PEM_END_OF_LINE.len();
        if end_trailer.len() < trailer_len {
            continue;
        }
        let rest_of_end_line = &end_trailer[trailer_len..];
        let end_trailer = &end_trailer[..trailer_len];
        if !end_trailer.starts_with(type_line) || !end_trailer.ends_with(PEM_END_OF_LINE) {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }
        let b64: Vec<u8> = rest[..end_index]
            .iter()
            .copied()
            .filter(|b| *b != b' ' && *b != b'\t')
            .collect();
        let Some(bytes) = std_decode(&b64) else {
            continue;
        };
        let skip = (end_index + PEM_END.len()).saturating_sub(1);
        let (_, after_end) = get_line(&rest[skip..]);
        let block = Block {
            kind: String::from_utf8_lossy(type_line).into_owned(),
            headers,
            bytes,
        };
        return Some((block, after_end));
    }
}

/// Every block `pem.Decode` finds, in order.
pub fn decode_all(mut data: &[u8]) -> Vec<Block> {
    let mut out = Vec::new();
    while let Some((b, rest)) = decode(data) {
        out.push(b);
        data = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_junk_and_reports_headers() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\nmore\n-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n\nBAU=\n-----END X-----\n";
        let blocks = decode_all(text.as_bytes());
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].kind, "CERTIFICATE");
        assert_eq!(blocks[0].bytes, vec![1, 2, 3]);
        assert_eq!(
            blocks[1].headers,
            vec![("Proc-Type".to_string(), "4,ENCRYPTED".to_string())]
        );
        assert_eq!(blocks[1].bytes, vec![4, 5]);
    }

    #[test]
    fn malformed_block_is_passed_over() {
        let text =
            "-----BEGIN A-----\n!!!\n-----END A-----\n-----BEGIN B-----\nAQ==\n-----END B-----\n";
        let blocks = decode_all(text.as_bytes());
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].kind, "B");
    }

    #[test]
    fn every_truncation_of_a_bundle_decodes_without_panicking() {
        let text = "x\n-----BEGIN A-----\nK: v\n\nAQID\n-----END A-----\n-----BEGIN B-----\n-----END B-----\n";
        for i in 0..=text.len() {
            let _ = decode_all(&text.as_bytes()[..i]);
        }
        assert_eq!(decode_all(text.as_bytes()).len(), 2);
    }

    #[test]
    fn nothing_to_find() {
        assert!(decode(b"no pem here").is_none());
    }
}
