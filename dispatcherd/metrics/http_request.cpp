#include "dispatcherd/metrics/http_request.h"

#include <cstdint>
#include <vector>

namespace dispatcherd::metrics {

namespace {

/// Decodes the code point at `i` of valid UTF-8 and advances `i` past it.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  int len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += static_cast<std::size_t>(len);
  return cp;
}

/// Python's str.isspace() for one code point.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

}  // namespace

bool is_valid_utf8(std::string_view bytes) {
  std::size_t i = 0, n = bytes.size();
  while (i < n) {
    auto b = static_cast<unsigned char>(bytes[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    int len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;  // overlong
      if (b == 0xED) hi = 0x9F;  // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;  // overlong
      if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return false;  // continuation byte first, C0/C1 overlong, or F5..FF
    }
    if (i + static_cast<std::size_t>(len) > n) return false;
    auto b1 = static_cast<unsigned char>(bytes[i + 1]);
    if (b1 < lo || b1 > hi) return false;
    for (int k = 2; k < len; ++k) {
      auto bk = static_cast<unsigned char>(bytes[i + static_cast<std::size_t>(k)]);
      if (bk < 0x80 || bk > 0xBF) return false;
    }
    i += static_cast<std::size_t>(len);
  }
  return true;
}

RequestLineVerdict parse_request_line(std::string_view line, RequestLine& out) {
  if (!is_valid_utf8(line)) return RequestLineVerdict::kInvalidUtf8;
  // Tokens split on runs of whitespace; leading and trailing whitespace produce no token,
  // which is what strip() followed by split(maxsplit=2) yields for the first three parts.
  std::vector<std::string_view> tokens;
  std::size_t i = 0, start = 0;
  bool in_token = false;
  while (i < line.size() && tokens.size() < 3) {
    std::size_t here = i;
    char32_t cp = next_code_point(line, i);
    if (is_python_space(cp)) {
      if (in_token) tokens.push_back(line.substr(start, here - start));
      in_token = false;
    } else if (!in_token) {
      in_token = true;
      start = here;
    }
  }
  if (in_token && tokens.size() < 3) tokens.push_back(line.substr(start));
  if (tokens.size() < 3) return RequestLineVerdict::kTooFewParts;
  out.method.assign(tokens[0]);
  out.path.assign(tokens[1]);
  return RequestLineVerdict::kOk;
}

}  // namespace dispatcherd::metrics
