#include "dispatcherd/message_scan.h"

#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

#include "dispatcherd/utf8.h"
#include "identity_hasher.h"
#include "json_text.h"

namespace dispatcherd {

namespace {

using text::IdentityHasher;

// The top-level fields the scanner reads; each may appear once.
enum Field : unsigned {
  kTask = 1u << 0,
  kUuid = 1u << 1,
  kArgs = 1u << 2,
  kKwargs = 1u << 3,
  kCallbacks = 1u << 4,
  kErrbacks = 1u << 5,
  kTimeout = 1u << 6,
  kDelay = 1u << 7,
  kOnDuplicate = 1u << 8,
  kSelfCheck = 1u << 9,  // validated, noted for the worker
  kOther = 1u << 10,     // any other key: validated, not read
  kRefused = 1u << 11    // control / chunk keys: not a task message
};

Field field_of(std::string_view key) {
  switch (key.size()) {
    case 4:
      if (key == "task") return kTask;
      if (key == "uuid") return kUuid;
      if (key == "args") return kArgs;
      break;
    case 5:
      if (key == "delay") return kDelay;
      break;
    case 6:
      if (key == "kwargs") return kKwargs;
      break;
    case 7:
      if (key == "timeout") return kTimeout;
      if (key == "control") return kRefused;
      break;
    case 8:
      if (key == "errbacks") return kErrbacks;
      break;
    case 9:
      if (key == "callbacks") return kCallbacks;
      break;
    case 10:
      if (key == "self_check") return kSelfCheck;
      break;
    case 12:
      if (key == "on_duplicate") return kOnDuplicate;
      break;
    case 21:
      if (key == "__dispatcherd_chunk__") return kRefused;
      break;
    default:
      break;
  }
  return kOther;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A recursive-descent validator over the text. Every method returns false at the first thing
// it will not vouch for; nothing is thrown and nothing is allocated except for strings with
// escapes that must be decoded.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : s_(text) {}

  std::optional<ScannedTask> task_message() {
    ScannedTask out;
    std::uint64_t parts[3] = {text::null_hash(), text::null_hash(), text::null_hash()};
    unsigned seen = 0;
    skip_ws();
    if (!take('{')) return std::nullopt;
    skip_ws();
    if (!take('}')) {
      while (true) {
        std::string_view key;
        if (!key_string(key)) return std::nullopt;
        skip_ws();
        if (!take(':')) return std::nullopt;
        skip_ws();
        const Field f = field_of(key);
        if (f == kRefused) return std::nullopt;
        if (f != kOther && (seen & f)) return std::nullopt;  // the parsed object keeps the last
        seen |= f;
        if (!member(f, out.fields, parts)) return std::nullopt;
        skip_ws();
        if (take(',')) {
          skip_ws();
          continue;
        }
        if (!take('}')) return std::nullopt;
        break;
      }
    }
    skip_ws();
    if (i_ != s_.size()) return std::nullopt;
    if (!(seen & kTask)) return std::nullopt;
    out.identity = text::combine_identity(parts[0], parts[1], parts[2]);
    out.needs_tree = needs_tree_;
    return out;
  }

 private:
  // One top-level member's value.
  bool member(Field f, TaskFields& fields, std::uint64_t* parts) {
    switch (f) {
      case kTask: {
        std::string_view v;
        if (!string_value(v) || v.empty()) return false;
        fields.task.assign(v);
        IdentityHasher h;
        h.str(v);
        parts[0] = h.finish();
        return true;
      }
      case kUuid: {
        if (literal("null")) return true;
        std::string_view v;
        if (!string_value(v)) return false;
        fields.uuid.emplace(v);
        return true;
      }
      case kArgs:
      case kKwargs: {
        if (peek() != (f == kArgs ? '[' : '{')) return false;
        IdentityHasher h;
        if (!value(&h, 1)) return false;
        parts[f == kArgs ? 1 : 2] = h.finish();
        return true;
      }
      case kCallbacks:
      case kErrbacks:
        if (literal("null")) return true;
        needs_tree_ = true;
        return peek() == '[' && value(nullptr, 1);
      case kSelfCheck:
        needs_tree_ = true;
        return value(nullptr, 1);
      case kTimeout:
      case kDelay: {
        if (literal("null")) return true;
        double d = 0;
        if (!number(nullptr, &d) || !std::isfinite(d) || d < 0) return false;
        (f == kTimeout ? fields.timeout : fields.delay) = d;
        return true;
      }
      case kOnDuplicate: {
        if (literal("null")) return true;
        std::string_view v;
        if (!string_value(v)) return false;
        if (auto known = on_duplicate_from_name(v)) {
          fields.on_duplicate = *known;
        } else {
          fields.on_duplicate = OnDuplicate::Parallel;
          fields.on_duplicate_unknown = true;
        }
        return true;
      }
      case kOther:
      default:
        return value(nullptr, 1);
    }
  }

  // Any JSON value at nesting `depth`, fed to `h` when given.
  bool value(IdentityHasher* h, int depth) {
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '{':
        return object(h, depth);
      case '[':
        return array(h, depth);
      case '"': {
        std::string_view v;
        if (!string_value(v)) return false;
        if (h) h->str(v);
        return true;
      }
      case 't':
        if (!literal("true")) return false;
        if (h) h->u8(2);
        return true;
      case 'f':
        if (!literal("false")) return false;
        if (h) h->u8(1);
        return true;
      case 'n':
        if (!literal("null")) return false;
        if (h) h->u8(0);
        return true;
      default:
        return number(h, nullptr);
    }
  }

  bool array(IdentityHasher* h, int depth) {
    if (depth > kScanMaxDepth) return false;
    ++i_;  // '['
    // The element count comes first in the hash, so elements go to a hasher of their own
    // and are folded in once the count is known.
    IdentityHasher elements;
    std::uint64_t n = 0;
    skip_ws();
    if (!take(']')) {
      while (true) {
        if (!value(h ? &elements : nullptr, depth + 1)) return false;
        ++n;
        skip_ws();
        if (take(',')) {
          skip_ws();
          continue;
        }
        if (!take(']')) return false;
        break;
      }
    }
    if (h) h->array(n, elements.finish());
    return true;
  }

  bool object(IdentityHasher* h, int depth) {
    if (depth > kScanMaxDepth) return false;
    ++i_;  // '{'
    // A hashed object must not repeat a key: the parsed object keeps only the last one.
    constexpr std::size_t kMaxMembers = 32;
    std::uint64_t keys[kMaxMembers];
    std::uint64_t n = 0, sum = 0;
    skip_ws();
    if (!take('}')) {
      while (true) {
        std::string_view key;
        if (!key_string(key)) return false;
        skip_ws();
        if (!take(':')) return false;
        skip_ws();
        if (h) {
          if (n == kMaxMembers) return false;
          IdentityHasher member;
          member.str(key);
          keys[n] = member.h;
          for (std::size_t k = 0; k < n; ++k)
            if (keys[k] == member.h) return false;
          if (!value(&member, depth + 1)) return false;
          sum += member.finish();
        } else if (!value(nullptr, depth + 1)) {
          return false;
        }
        ++n;
        skip_ws();
        if (take(',')) {
          skip_ws();
          continue;
        }
        if (!take('}')) return false;
        break;
      }
    }
    if (h) h->object(n, sum);
    return true;
  }

  // A number with JSON's grammar; its value (as nlohmann's get<double>() gives it) goes to `h`
  // and `out` when given.
  bool number(IdentityHasher* h, double* out) {
    const std::size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size()) return false;
    if (s_[i_] == '0') {
      ++i_;
    } else if (s_[i_] >= '1' && s_[i_] <= '9') {
      digits();
    } else {
      return false;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return false;
    }
    // Always converted: nlohmann refuses a number out of a double's range (1e999), and then
    // the whole text is not JSON. Correctly rounded, like strtod and like converting the
    // 64-bit integer nlohmann keeps.
    double d = 0;
    const auto r = std::from_chars(s_.data() + start, s_.data() + i_, d);
    if (r.ec != std::errc() || r.ptr != s_.data() + i_) return false;  // out of range
    if (h) h->number(d);
    if (out) *out = d;
    return true;
  }

  bool digits() {
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }

  // An object key: a string without escapes (the fields main reads never need one).
  bool key_string(std::string_view& out) {
    bool escaped = false;
    return string_body(out, escaped) && !escaped;
  }

  // A string value, its escapes decoded (into scratch_, valid until the next string).
  bool string_value(std::string_view& out) {
    bool escaped = false;
    return string_body(out, escaped);
  }

  bool string_body(std::string_view& out, bool& escaped) {
    if (!take('"')) return false;
    const std::size_t start = i_;
    while (true) {
      if (i_ >= s_.size()) return false;
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        out = s_.substr(start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\') break;
      if (c < 0x20) return false;
      if (c < 0x80) {
        ++i_;
        continue;
      }
      const text::CodePoint cp = text::decode_utf8(s_, i_);
      if (!cp.valid) return false;
      i_ += cp.len;
    }
    // Escapes: decode the whole string into scratch_.
    escaped = true;
    scratch_.assign(s_.substr(start, i_ - start));
    while (true) {
      if (i_ >= s_.size()) return false;
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        out = scratch_;
        return true;
      }
      if (c == '\\') {
        if (!escape()) return false;
        continue;
      }
      if (c < 0x20) return false;
      if (c < 0x80) {
        scratch_ += static_cast<char>(c);
        ++i_;
        continue;
      }
      const text::CodePoint cp = text::decode_utf8(s_, i_);
      if (!cp.valid) return false;
      scratch_.append(s_.substr(i_, cp.len));
      i_ += cp.len;
    }
  }

  // One escape at i_ (a backslash), decoded onto scratch_.
  bool escape() {
    if (i_ + 1 >= s_.size()) return false;
    const char e = s_[i_ + 1];
    i_ += 2;
    switch (e) {
      case '"':
      case '\\':
      case '/':
        scratch_ += e;
        return true;
      case 'b':
        scratch_ += '\b';
        return true;
      case 'f':
        scratch_ += '\f';
        return true;
      case 'n':
        scratch_ += '\n';
        return true;
      case 'r':
        scratch_ += '\r';
        return true;
      case 't':
        scratch_ += '\t';
        return true;
      case 'u':
        break;
      default:
        return false;
    }
    int first = hex4();
    if (first < 0) return false;
    char32_t cp = static_cast<char32_t>(first);
    if (first >= 0xDC00 && first <= 0xDFFF) return false;  // a lone low surrogate
    if (first >= 0xD800 && first <= 0xDBFF) {
      if (i_ + 1 >= s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') return false;
      i_ += 2;
      const int second = hex4();
      if (second < 0xDC00 || second > 0xDFFF) return false;
      cp = 0x10000 + ((static_cast<char32_t>(first) - 0xD800) << 10) +
           (static_cast<char32_t>(second) - 0xDC00);
    }
    append_utf8(scratch_, cp);
    return true;
  }

  int hex4() {
    if (i_ + 4 > s_.size()) return -1;
    int v = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = hex_digit(s_[i_ + k]);
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    i_ += 4;
    return v;
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }

  bool take(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::string scratch_;
  bool needs_tree_ = false;
};

}  // namespace

std::optional<ScannedTask> scan_task_message(std::string_view text) {
  return Scanner(text).task_message();
}

}  // namespace dispatcherd
