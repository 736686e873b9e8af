#pragma once
// The client side of the Unix socket broker (upstream-spec §3.2): newline-framed lines over
// one stream connection; the service answers on the connection the request came from.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/fd.h"
#include "dispatcherd/result.h"

namespace dispatcherctl {

/// One connection to a dispatcherd control socket.
class SocketClient {
 public:
  /// Connects to `path` (relative paths are resolved against the working directory). The
  /// error is one line: "cannot connect to socket PATH: No such file or directory".
  static dispatcherd::Result<SocketClient> connect(const std::string& path);

  /// Writes each piece followed by "\n" (pieces come from split_message at 1024 bytes).
  dispatcherd::Status send_lines(const std::vector<std::string>& pieces);

  /// Called per received line (without "\n"; empty lines are skipped); true stops reading.
  using LineHandler = std::function<bool(std::string_view)>;
  /// Reads lines until `handler` returns true, the peer closes, or `deadline` passes.
  dispatcherd::Status read_lines(std::chrono::steady_clock::time_point deadline,
                                 const LineHandler& handler);

 private:
  SocketClient(dispatcherd::Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  dispatcherd::Fd fd_;
  std::string path_;
  std::string buffer_;  ///< bytes after the last complete line
};

}  // namespace dispatcherctl
