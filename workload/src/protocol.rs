//! The demo's line protocol: the client says `hello from <its ID>\n`, the server answers
//! `hello <peer ID>, I am <own ID>\n` and closes. Lines are bounded so a peer cannot make us
//! buffer without limit, and reads time out so a silent peer cannot hold a task forever.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest line accepted (a SPIFFE ID is at most 2048 bytes).
pub const MAX_LINE: usize = 4096;
/// How long a peer may take to send its line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer sent nothing within {}s", READ_TIMEOUT.as_secs())]
    Timeout,
    #[error("the peer closed the connection without sending a line")]
    Closed,
    #[error("the peer's line is longer than {MAX_LINE} bytes or not UTF-8")]
    BadLine,
}

pub fn greeting(own_id: &str) -> String {
    format!("hello from {own_id}\n")
}

pub fn reply(peer_id: &str, own_id: &str) -> String {
    format!("hello {peer_id}, I am {own_id}\n")
}

/// Reads one `\n`-terminated line (returned without the newline).
pub async fn read_line<S: AsyncRead + Unpin>(stream: S) -> Result<String, ProtocolError> {
    let mut reader = BufReader::new(stream).take(MAX_LINE as u64 + 1);
    let mut buf = Vec::new();
    let n = tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut buf))
        .await
        .map_err(|_| ProtocolError::Timeout)??;
    if n == 0 {
        return Err(ProtocolError::Closed);
    }
    if buf.last() != Some(&b'\n') || buf.len() > MAX_LINE {
        return Err(ProtocolError::BadLine);
    }
    buf.pop();
    String::from_utf8(buf).map_err(|_| ProtocolError::BadLine)
}

/// Writes `line` and flushes.
pub async fn write_line<S: AsyncWrite + Unpin>(
    stream: &mut S,
    line: &str,
) -> Result<(), ProtocolError> {
    stream.write_all(line.as_bytes()).await?;
    stream.flush().await?;
    Ok(())
}
