#include "socket_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace dispatcherctl {

using dispatcherd::Error;
using dispatcherd::Ok;
using dispatcherd::Result;
using dispatcherd::Status;

Result<SocketClient> SocketClient::connect(const std::string& path) {
  const std::string prefix = "cannot connect to socket " + path + ": ";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // A relative path is resolved by connect() against the working directory, and staying
  // relative keeps long directories within sun_path's 108 bytes.
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Error{prefix + "path must be 1.." + std::to_string(sizeof addr.sun_path - 1) + " bytes"};
  std::memcpy(addr.sun_path, path.data(), path.size());
  dispatcherd::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error{prefix + std::strerror(errno)};
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Error{prefix + std::strerror(errno)};
  return SocketClient(std::move(fd), path);
}

Status SocketClient::send_lines(const std::vector<std::string>& pieces) {
  std::string data;
  for (const std::string& p : pieces) data += p + "\n";
  for (std::size_t off = 0; off < data.size();) {
    // MSG_NOSIGNAL: a service that closed the connection must not kill us with SIGPIPE.
    const ssize_t n = ::send(fd_.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{"write to socket " + path_ + " failed: " + std::strerror(errno)};
    off += static_cast<std::size_t>(n);
  }
  return Ok{};
}

Status SocketClient::read_lines(std::chrono::steady_clock::time_point deadline,
                                const LineHandler& handler) {
  using std::chrono::steady_clock;
  char chunk[65536];
  for (;;) {
    // Complete lines already buffered come first.
    for (std::size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && handler(line)) return Ok{};
    }
    const auto left = deadline - steady_clock::now();
    if (left <= steady_clock::duration::zero()) return Ok{};
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    pollfd pfd{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(ms));
    if (ready < 0 && errno != EINTR) return Error{std::string("poll: ") + std::strerror(errno)};
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{"read from socket " + path_ + " failed: " + std::strerror(errno)};
    if (n == 0) return Ok{};  // the service closed the connection; a partial line is dropped
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

}  // namespace dispatcherctl
