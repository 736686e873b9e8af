// Random UUID4 strings. Called per control request and per chunked message, so randomness is
// fetched in blocks rather than one syscall per id.

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>

#include "dispatcherd/log.h"
#include "dispatcherd/message.h"

namespace dispatcherd {

namespace {

struct Pool {
  unsigned char buf[256];
  std::size_t pos = sizeof buf;
  pid_t pid = 0;
};

bool fill_from_urandom(unsigned char* out, std::size_t n) {
  const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return got == n;
}

void fill(unsigned char* out, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::getrandom(out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  if (got == n) return;
  // Without a kernel source of randomness ids could collide; refusing to run is safer.
  DISPATCHERD_ASSERT(fill_from_urandom(out, n));
}

// Draws 16 random bytes. The pool is per thread, and refilled after fork(): a forked worker
// must never hand out the same ids as its parent.
void random16(unsigned char out[16]) {
  thread_local Pool pool;
  const pid_t pid = ::getpid();
  if (pool.pid != pid) {
    pool.pid = pid;
    pool.pos = sizeof pool.buf;
  }
  if (pool.pos + 16 > sizeof pool.buf) {
    fill(pool.buf, sizeof pool.buf);
    pool.pos = 0;
  }
  for (int i = 0; i < 16; ++i) out[i] = pool.buf[pool.pos + static_cast<std::size_t>(i)];
  pool.pos += 16;
}

std::string format_uuid(char sep) {
  static constexpr char kHex[] = "0123456789abcdef";
  unsigned char b[16];
  random16(b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (sep != 0 && (i == 4 || i == 6 || i == 8 || i == 10)) out += sep;
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 0x0F];
  }
  return out;
}

}  // namespace

std::string uuid4() {
  return format_uuid('-');
}
std::string uuid4_underscored() {
  return format_uuid('_');
}
std::string uuid4_hex() {
  return format_uuid(0);
}

}  // namespace dispatcherd
