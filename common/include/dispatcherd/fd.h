#pragma once
// Fd: the owner of one file descriptor (RAII, move-only). Every fd the project opens lives
// in one of these or in an object that closes it in its destructor.

#include <unistd.h>

#include <utility>

namespace dispatcherd {

/// Owns a file descriptor and closes it on destruction; -1 means "none".
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }

  /// The raw descriptor (still owned by this object).
  int get() const { return fd_; }
  /// True when a descriptor is held.
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  /// Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  /// Closes the current descriptor (if any) and takes `fd`.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// Sets O_NONBLOCK on fd; returns false on failure (errno set).
bool set_nonblocking(int fd, bool on = true);
/// Sets FD_CLOEXEC on fd; returns false on failure (errno set).
bool set_cloexec(int fd, bool on = true);

}  // namespace dispatcherd
