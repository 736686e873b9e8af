#pragma once
// Request-line rules of upstream's metrics HTTP server (spec §10), as pure functions so the
// edge cases are unit-tested without sockets. Upstream decodes the line as strict UTF-8,
// strips it and splits it on whitespace with Python's str.split(maxsplit=2); we do the same,
// including Python's idea of Unicode whitespace.

#include <string>
#include <string_view>

namespace dispatcherd::metrics {

/// True when `bytes` is well-formed UTF-8 as Python's strict decoder sees it (no overlong
/// forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view bytes);

/// The outcome of parsing one request line.
enum class RequestLineVerdict {
  kOk,           ///< method and path are set
  kInvalidUtf8,  ///< 400 Bad Request
  kTooFewParts,  ///< fewer than 3 whitespace-separated parts: 400 Bad Request
};

/// Method and path of a request line (the version is not used).
struct RequestLine {
  std::string method;  ///< first part, compared exactly with "GET"
  std::string path;    ///< second part, compared exactly with "/metrics"
};

/// Parses `line` (with or without its line ending) into `out`.
RequestLineVerdict parse_request_line(std::string_view line, RequestLine& out);

/// True when `line` (with its ending) ends the header block: exactly "\r\n" or "\n".
inline bool is_blank_header_line(std::string_view line) {
  return line == "\r\n" || line == "\n";
}

}  // namespace dispatcherd::metrics
