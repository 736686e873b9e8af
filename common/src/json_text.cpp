#include "json_text.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace dispatcherd::text {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_u16(std::string& out, unsigned v) {
  const char buf[6] = {
      '\\', 'u', kHex[(v >> 12) & 0xF], kHex[(v >> 8) & 0xF], kHex[(v >> 4) & 0xF], kHex[v & 0xF]};
  out.append(buf, sizeof buf);
}

bool is_cont(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

template <class T>
void append_int(std::string& out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

CodePoint decode_utf8(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t len;
  char32_t cp;
  char32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {0xFFFD, 1, false};
  }
  if (s.size() - i < len) return {0xFFFD, 1, false};
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (!is_cont(b)) return {0xFFFD, 1, false};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0xFFFD, 1, false};
  return {cp, len, true};
}

void append_escaped(std::string& out, std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    // Fast path: runs of printable ASCII need no escaping.
    std::size_t j = i;
    while (j < s.size()) {
      const auto b = static_cast<unsigned char>(s[j]);
      if (b < 0x20 || b >= 0x7F || b == '"' || b == '\\') break;
      ++j;
    }
    out.append(s.data() + i, j - i);
    i = j;
    if (i >= s.size()) break;
    const CodePoint c = decode_utf8(s, i);
    i += c.len;
    switch (c.valid ? c.cp : 0xFFFD) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default: {
        const char32_t v = c.valid ? c.cp : 0xFFFD;
        if (v > 0xFFFF) {
          const char32_t u = v - 0x10000;
          append_u16(out, 0xD800 + static_cast<unsigned>(u >> 10));
          append_u16(out, 0xDC00 + static_cast<unsigned>(u & 0x3FF));
        } else {
          append_u16(out, static_cast<unsigned>(v));
        }
      }
    }
  }
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const CodePoint c = decode_utf8(s, i);
    if (c.valid) {
      out.append(s.data() + i, c.len);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += c.len;
  }
  return out;
}

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); i += decode_utf8(s, i).len) ++n;
  return n;
}

void append_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  // Shortest round-trip digits, then Python's layout rule (format_float_short, repr mode):
  // exponent form when the decimal point position is <= -4 or > 16.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  if (!sci.empty() && sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const std::size_t epos = sci.find('e');
  std::string digits;
  for (char ch : sci.substr(0, epos)) {
    if (ch != '.') digits += ch;
  }
  int exp10 = 0;
  std::from_chars(sci.data() + epos + 1 + (sci[epos + 1] == '+' ? 1 : 0), sci.data() + sci.size(),
                  exp10);
  const int decpt = exp10 + 1;
  const int nd = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= nd) {
      out += digits;
      out.append(static_cast<std::size_t>(decpt - nd), '0');
      out += ".0";
    } else {
      out.append(digits, 0, static_cast<std::size_t>(decpt));
      out += '.';
      out.append(digits, static_cast<std::size_t>(decpt));
    }
    return;
  }
  out += digits[0];
  if (nd > 1) {
    out += '.';
    out.append(digits, 1);
  }
  out += 'e';
  out += exp10 < 0 ? '-' : '+';
  const int a = exp10 < 0 ? -exp10 : exp10;
  if (a < 10) out += '0';
  append_int(out, a);
}

void append_json(std::string& out, const nlohmann::json& value, bool python_separators) {
  using T = nlohmann::json::value_t;
  const char* item_sep = python_separators ? ", " : ",";
  const char* key_sep = python_separators ? ": " : ":";
  switch (value.type()) {
    case T::null:
      out += "null";
      return;
    case T::boolean:
      out += value.get<bool>() ? "true" : "false";
      return;
    case T::number_integer:
      append_int(out, value.get<std::int64_t>());
      return;
    case T::number_unsigned:
      append_int(out, value.get<std::uint64_t>());
      return;
    case T::number_float:
      append_double(out, value.get<double>());
      return;
    case T::string:
      out += '"';
      append_escaped(out, value.get_ref<const std::string&>());
      out += '"';
      return;
    case T::array: {
      out += '[';
      bool first = true;
      for (const auto& v : value) {
        if (!first) out += item_sep;
        first = false;
        append_json(out, v, python_separators);
      }
      out += ']';
      return;
    }
    case T::object: {
      out += '{';
      bool first = true;
      for (auto it = value.begin(); it != value.end(); ++it) {
        if (!first) out += item_sep;
        first = false;
        out += '"';
        append_escaped(out, it.key());
        out += '"';
        out += key_sep;
        append_json(out, it.value(), python_separators);
      }
      out += '}';
      return;
    }
    case T::binary:  // never produced by parsing; no JSON form Python would agree with
    case T::discarded:
    default:
      out += "null";
      return;
  }
}

bool nesting_exceeds(std::string_view s, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (in_string) {
      if (ch == '\\') {
        ++i;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    switch (ch) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return true;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return false;
}

}  // namespace dispatcherd::text
