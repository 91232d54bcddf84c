//! A small client of the RESP protocol (RESP2), which Valkey and Redis
//! speak: commands as arrays of bulk strings, replies read with bounds, so
//! a hostile or broken store can send nothing that grows without limit.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// The largest bulk string or array read: the scripts' replies are a few numbers.
const MAX_REPLY: usize = 64 * 1024;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nabc`, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`, or `*-1` (nil).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for a number a script returned as a string.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Bulk(Some(b)) => String::from_utf8(b.clone()).ok(),
            Self::Simple(s) => Some(s.clone()),
            Self::Integer(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// One connection to the store.
pub struct Connection {
    stream: BufStream<TcpStream>,
}

impl Connection {
    /// Connects to `authority` (`host:port`), authenticates with `password`
    /// and selects `db`.
    pub async fn open(authority: &str, password: Option<&str>, db: u32) -> Result<Self, String> {
        let stream = TcpStream::connect(authority).await.map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut c = Self { stream: BufStream::new(stream) };
        if let Some(password) = password {
            c.expect_ok(&[b"AUTH", password.as_bytes()]).await?;
        }
        if db != 0 {
            c.expect_ok(&[b"SELECT", db.to_string().as_bytes()]).await?;
        }
        Ok(c)
    }

    async fn expect_ok(&mut self, args: &[&[u8]]) -> Result<(), String> {
        match self.call(args).await? {
            Reply::Simple(_) => Ok(()),
            Reply::Error(e) => Err(format!("the store refused {}: {e}", String::from_utf8_lossy(args[0]))),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let io = |e: std::io::Error| format!("store connection: {e}");
        self.stream.write_all(&out).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        Box::pin(read_reply(&mut self.stream, 0)).await
    }
}

async fn read_line(stream: &mut BufStream<TcpStream>) -> Result<String, String> {
    let mut line = Vec::new();
    let mut limited = (&mut *stream).take(MAX_REPLY as u64);
    limited.read_until(b'\n', &mut line).await.map_err(|e| format!("store connection: {e}"))?;
    if !line.ends_with(b"\r\n") {
        return Err("the store closed the connection or sent a malformed line".into());
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| "the store sent a line that is not text".into())
}

async fn read_reply(stream: &mut BufStream<TcpStream>, depth: u8) -> Result<Reply, String> {
    if depth > 4 {
        return Err("the store's reply is nested too deep".into());
    }
    let line = read_line(stream).await?;
    let (kind, rest) = line.split_at_checked(1).ok_or("the store sent an empty line")?;
    let length = |rest: &str| -> Result<Option<usize>, String> {
        let n: i64 = rest.parse().map_err(|_| format!("bad length `{rest}`"))?;
        match usize::try_from(n) {
            Ok(n) if n <= MAX_REPLY => Ok(Some(n)),
            Ok(_) => Err(format!("a reply of {n} is longer than the {MAX_REPLY} read")),
            Err(_) => Ok(None),
        }
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(rest.parse().map_err(|_| format!("bad integer `{rest}`"))?),
        "$" => match length(rest)? {
            None => Reply::Bulk(None),
            Some(n) => {
                let mut data = vec![0; n + 2];
                stream.read_exact(&mut data).await.map_err(|e| format!("store connection: {e}"))?;
                data.truncate(n);
                Reply::Bulk(Some(data))
            }
        },
        "*" => match length(rest)? {
            None => Reply::Array(None),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    items.push(Box::pin(read_reply(stream, depth + 1)).await?);
                }
                Reply::Array(Some(items))
            }
        },
        other => return Err(format!("the store sent an unknown reply type `{other}`")),
    })
}
