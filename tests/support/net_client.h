#pragma once
// Tiny blocking clients for fault and hostile-input tests: raw bytes to a TCP port or a Unix
// socket, an HTTP GET of the metrics endpoint, and reading a value out of Prometheus text.

#include <optional>
#include <string>

namespace dispatcherd::testing {

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to 0, then closed).
int free_tcp_port();

/// Connects to 127.0.0.1:`port`, sends `request`, half-closes and reads until EOF or
/// `timeout` seconds; the bytes read ("" when the connection failed).
std::string tcp_exchange(int port, const std::string& request, double timeout = 5);

/// GET /metrics on 127.0.0.1:`port`; the response body, or "" unless the status was 200.
std::string fetch_metrics(int port);

/// The value of the sample `name` (exact series text, e.g. `x_total` or `x{a="b"}`) in
/// Prometheus text, or nullopt when absent.
std::optional<double> metric_value(const std::string& text, const std::string& name);

/// A connected Unix stream socket; -1 on failure. The caller closes it.
int unix_connect(const std::string& path);
/// Writes all of `data` (blocking); false on error.
bool write_all(int fd, const std::string& data);
/// Reads one '\n'-terminated line (without the newline) within `timeout` seconds; nullopt on
/// EOF, error or timeout.
std::optional<std::string> read_line(int fd, double timeout = 5);

}  // namespace dispatcherd::testing
