//! The socket options socket2 does not offer (`SO_RCVBUFFORCE`,
//! `SO_ATTACH_REUSEPORT_CBPF`), set through one checked wrapper so that the
//! crate's `unsafe` for them is in one place.

/// `setsockopt(sock, SOL_SOCKET, name, value)`.
#[cfg(target_os = "linux")]
pub(crate) fn set_socket_option<T>(
    sock: &socket2::Socket,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let size = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor belongs to `sock`, open for the whole call;
    // `value` (and whatever it points to) outlives the call, the kernel
    // copies it, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_ref(value).cast(),
            size,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
