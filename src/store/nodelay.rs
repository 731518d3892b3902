//! A workaround: TCP_NODELAY on the PostgreSQL connections, which sqlx 0.9.0 does not set.
//!
//! Without it, Nagle's algorithm delays the second half of any statement larger than a socket's
//! initial send buffer by a delayed-ACK timeout (40 ms on Linux). sqlx sets the option itself
//! once transact-rs/sqlx#4336 is released; with that sqlx release this module, its one call in
//! `postgres.rs` and the `socket2` dependency can be deleted.

/// Sets TCP_NODELAY on this process's TCP sockets whose peer port is `port` (the database's).
///
/// sqlx does not set it. Without it, a statement bigger than a socket's initial send buffer
/// (16 KiB on Linux) goes out in two writes, and Nagle's algorithm holds the second until the
/// server's delayed ACK arrives, 40 ms later: measured here, a 32 KiB INSERT took 45 ms instead
/// of under 1 ms, and so would every write to a model whose snapshot row is that large. sqlx
/// offers no hook on its socket, so after each connect the process's descriptors are looked
/// through for the new one. Setting the option again on older connections is harmless.
#[cfg(target_os = "linux")]
pub(super) fn set_nodelay_on_sockets_to(port: u16) {
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the next three calls. If another thread
        // closed it meanwhile they fail with EBADF; if the number was reused, the option lands
        // on another socket, and only on a TCP one talking to the database port.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let is_database = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if is_database && socket.r#type().ok() == Some(socket2::Type::STREAM) {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn set_nodelay_on_sockets_to(_port: u16) {}
