/** An error a filesystem operation answers with (an errno name). */
export class VfsError extends Error {
  constructor(readonly errno: 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'ENODATA' | 'EIO' | 'EROFS' | 'EINVAL' | 'EBADF' | 'ENOTSUP' | 'ERANGE' | 'EINTR') {
    super(errno)
  }
}
