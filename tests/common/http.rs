//! A minimal HTTP/1.1 client over one keep-alive TCP connection, for tests and the
//! benchmark of `placewise serve`. It speaks only to loopback addresses and reads
//! responses framed by `Content-Length` or chunked encoding.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status code, headers (names in lower case) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    /// Connects to `address`, which must be a loopback address.
    pub fn open(address: SocketAddr) -> std::io::Result<Connection> {
        assert!(
            address.ip().is_loopback(),
            "the test client speaks only to this machine, not to {address}"
        );
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
            host: address.to_string(),
        })
    }

    /// Sets the `Host` header of the next requests, which is the connection's address
    /// until then.
    pub fn set_host(&mut self, host: &str) {
        self.host = host.to_string();
    }

    /// Sends `GET target` and reads the whole response; the connection stays open.
    pub fn get(&mut self, target: &str) -> std::io::Result<Response> {
        self.request("GET", target)
    }

    pub fn request(&mut self, method: &str, target: &str) -> std::io::Result<Response> {
        let request = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.reader.get_mut().write_all(request.as_bytes())?;
        self.read_response(method == "HEAD")
    }

    fn read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(invalid("the server closed the connection"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("invalid status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value): &(String, String)| value.clone())
        };
        let mut body = Vec::new();
        if head_only {
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
        if let Some(length) = find("content-length") {
            let length: usize = length.parse().map_err(|_| invalid("invalid length"))?;
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| invalid("invalid chunk size"))?;
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            self.reader.read_to_end(&mut body)?;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Sends one request on a new connection.
pub fn get(address: SocketAddr, target: &str) -> std::io::Result<Response> {
    Connection::open(address)?.get(target)
}

/// Sends one request with a JSON body on a new connection, as a WebDriver client does.
pub fn send_json(
    address: SocketAddr,
    method: &str,
    target: &str,
    body: &str,
) -> std::io::Result<Response> {
    let mut connection = Connection::open(address)?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    connection.reader.get_mut().write_all(request.as_bytes())?;
    connection.read_response(false)
}
