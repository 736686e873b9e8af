// A port of PyYAML 6's Emitter (emitter.py), restricted to what `yaml.dump(json_value,
// default_flow_style=False, sort_keys=True)` can produce: block mappings and sequences, `{}`/`[]`
// for empty ones, and plain, single-quoted or double-quoted scalars (the resolver and float rules
// are in yaml_scalars.cpp). Names and control flow follow the Python source on purpose, so a
// difference can be traced line by line; columns count code points, as Python's str does.

#include "yaml_output.h"

#include <cstdio>
#include <string>
#include <vector>

#include "dispatcherd/utf8.h"

namespace dispatcherctl {
namespace {

using dispatcherd::append_utf8;
using json = nlohmann::json;

constexpr int kBestIndent = 2;
constexpr int kBestWidth = 80;
constexpr int kNoIndent = -1;          // Python's `indent = None`
constexpr char32_t kEnd = 0xFFFFFFFF;  // Python's `ch = None` past the end of the text

bool is_break(char32_t c) {
  return c == '\n' || c == 0x85 || c == 0x2028 || c == 0x2029;
}
// '\0 \t\r\n\x85\u2028\u2029' in analyze_scalar.
bool is_space_or_break(char32_t c) {
  return c == 0 || c == ' ' || c == '\t' || c == '\r' || is_break(c);
}

// Decodes UTF-8; each byte of an invalid sequence becomes U+FFFD (nlohmann only holds valid
// UTF-8 from parsing, but a value built by hand might not be).
std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t len = b < 0x80         ? 1
                      : (b >> 5) == 6  ? 2
                      : (b >> 4) == 14 ? 3
                      : (b >> 3) == 30 ? 4
                                       : 0;
    char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    out.push_back(ok ? cp : 0xFFFD);
    i += ok ? len : 1;
  }
  return out;
}

// ScalarAnalysis of emitter.py (allow_double_quoted is always true and left out).
struct Analysis {
  bool empty = false;
  bool multiline = false;
  bool allow_flow_plain = true;
  bool allow_block_plain = true;
  bool allow_single_quoted = true;
  bool allow_block = true;
};

// Emitter.analyze_scalar with allow_unicode=False.
Analysis analyze_scalar(const std::u32string& s) {
  Analysis a;
  if (s.empty()) {
    a.empty = true;
    a.allow_flow_plain = false;
    a.allow_block = false;
    return a;
  }
  bool block_indicators = false, flow_indicators = false, line_breaks = false;
  bool special_characters = false;
  bool leading_space = false, leading_break = false, trailing_space = false;
  bool trailing_break = false, break_space = false, space_break = false;
  if (s.starts_with(U"---") || s.starts_with(U"...")) block_indicators = flow_indicators = true;
  bool preceded_by_whitespace = true;
  bool followed_by_whitespace = s.size() == 1 || is_space_or_break(s[1]);
  bool previous_space = false, previous_break = false;
  const std::u32string_view leading_special = U"#,[]{}&*!|>'\"%@`";
  for (std::size_t index = 0; index < s.size();) {
    const char32_t ch = s[index];
    if (index == 0) {
      if (leading_special.find(ch) != std::u32string_view::npos)
        flow_indicators = block_indicators = true;
      if (ch == '?' || ch == ':') {
        flow_indicators = true;
        if (followed_by_whitespace) block_indicators = true;
      }
      if (ch == '-' && followed_by_whitespace) flow_indicators = block_indicators = true;
    } else {
      if (std::u32string_view(U",?[]{}").find(ch) != std::u32string_view::npos)
        flow_indicators = true;
      if (ch == ':') {
        flow_indicators = true;
        if (followed_by_whitespace) block_indicators = true;
      }
      if (ch == '#' && preceded_by_whitespace) flow_indicators = block_indicators = true;
    }
    if (is_break(ch)) line_breaks = true;
    // Without allow_unicode every character outside printable ASCII (and '\n') is special.
    if (!(ch == '\n' || (ch >= 0x20 && ch <= 0x7E))) special_characters = true;
    if (ch == ' ') {
      if (index == 0) leading_space = true;
      if (index == s.size() - 1) trailing_space = true;
      if (previous_break) break_space = true;
      previous_space = true;
      previous_break = false;
    } else if (is_break(ch)) {
      if (index == 0) leading_break = true;
      if (index == s.size() - 1) trailing_break = true;
      if (previous_space) space_break = true;
      previous_space = false;
      previous_break = true;
    } else {
      previous_space = previous_break = false;
    }
    ++index;
    preceded_by_whitespace = is_space_or_break(ch);
    followed_by_whitespace = index + 1 >= s.size() || is_space_or_break(s[index + 1]);
  }
  if (leading_space || leading_break || trailing_space || trailing_break)
    a.allow_flow_plain = a.allow_block_plain = false;
  if (trailing_space) a.allow_block = false;
  if (break_space) a.allow_flow_plain = a.allow_block_plain = a.allow_single_quoted = false;
  if (space_break || special_characters)
    a.allow_flow_plain = a.allow_block_plain = a.allow_single_quoted = a.allow_block = false;
  if (line_breaks) a.allow_flow_plain = a.allow_block_plain = false;
  if (flow_indicators) a.allow_flow_plain = false;
  if (block_indicators) a.allow_block_plain = false;
  a.multiline = line_breaks;
  return a;
}

class Emitter {
 public:
  std::string run(const json& root) {
    node(root, /*root=*/true, /*mapping=*/false, /*simple_key=*/false);
    write_indent();     // expect_document_end
    if (open_ended_) {  // expect_document_start at StreamEnd
      write_indicator(U"...", true);
      write_indent();
    }
    return std::move(out_);
  }

 private:
  enum class Style { Plain, Single, Double };

  void node(const json& v, bool root, bool mapping, bool simple_key) {
    root_context_ = root;
    mapping_context_ = mapping;
    simple_key_context_ = simple_key;
    if (v.is_object()) {
      if (flow_level_ > 0 || v.empty()) return flow_collection(U"{", U"}");
      return block_mapping(v);
    }
    if (v.is_array()) {
      if (flow_level_ > 0 || v.empty()) return flow_collection(U"[", U"]");
      return block_sequence(v);
    }
    increase_indent(/*flow=*/true, false);  // expect_scalar
    if (v.is_string()) {
      scalar(decode_utf8(v.get_ref<const std::string&>()));
    } else {
      // null, bool, int and float text always resolves back to its own type and is safe
      // plain, so PyYAML writes it as is.
      std::string text = v.is_null()           ? "null"
                         : v.is_boolean()      ? (v.get<bool>() ? "true" : "false")
                         : v.is_number_float() ? pyyaml_float(v.get<double>())
                                               : v.dump();
      write_plain(decode_utf8(text), !simple_key_context_);
    }
    indent_ = pop_indent();
  }

  void scalar(const std::u32string& text) {
    const Analysis a = analyze_scalar(text);
    std::string utf8;
    for (char32_t c : text) append_utf8(utf8, c);
    const bool implicit_plain = !pyyaml_resolves_to_non_string(utf8);
    // choose_scalar_style for an untagged str event (style None, not canonical).
    Style style = Style::Double;
    if (implicit_plain && !(simple_key_context_ && (a.empty || a.multiline)) &&
        (flow_level_ > 0 ? a.allow_flow_plain : a.allow_block_plain)) {
      style = Style::Plain;
    } else if (a.allow_single_quoted && !(simple_key_context_ && a.multiline)) {
      style = Style::Single;
    }
    const bool split = !simple_key_context_;
    if (style == Style::Plain) write_plain(text, split);
    if (style == Style::Single) write_single_quoted(text, split);
    if (style == Style::Double) write_double_quoted(text, split);
  }

  void flow_collection(std::u32string_view open, std::u32string_view close) {
    write_indicator(open, true, /*whitespace=*/true);
    ++flow_level_;
    increase_indent(/*flow=*/true, false);
    indent_ = pop_indent();
    --flow_level_;
    write_indicator(close, false);
  }

  void block_sequence(const json& v) {
    increase_indent(false, /*indentless=*/mapping_context_ && !indention_);
    for (const json& item : v) {
      write_indent();
      write_indicator(U"-", true, false, /*indention=*/true);
      node(item, false, false, false);
    }
    indent_ = pop_indent();
  }

  void block_mapping(const json& v) {
    increase_indent(false, false);
    for (auto it = v.begin(); it != v.end(); ++it) {
      write_indent();
      const json key = it.key();
      const std::u32string key_text = decode_utf8(it.key());
      const Analysis ka = analyze_scalar(key_text);
      // check_simple_key: len("!!str") + len(scalar) < 128, not empty, not multiline.
      if (5 + key_text.size() < 128 && !ka.empty && !ka.multiline) {
        node(key, false, true, /*simple_key=*/true);
        write_indicator(U":", false);
      } else {
        write_indicator(U"?", true, false, /*indention=*/true);
        node(key, false, true, false);
        write_indent();
        write_indicator(U":", true, false, /*indention=*/true);
      }
      node(it.value(), false, true, false);
    }
    indent_ = pop_indent();
  }

  void increase_indent(bool flow, bool indentless) {
    indents_.push_back(indent_);
    if (indent_ == kNoIndent)
      indent_ = flow ? kBestIndent : 0;
    else if (!indentless)
      indent_ += kBestIndent;
  }

  int pop_indent() {
    const int i = indents_.back();
    indents_.pop_back();
    return i;
  }

  void write(std::u32string_view data) {
    for (char32_t c : data) append_utf8(out_, c);
    column_ += static_cast<int>(data.size());
  }

  void write_indicator(std::u32string_view indicator, bool need_whitespace, bool whitespace = false,
                       bool indention = false) {
    if (!(whitespace_ || !need_whitespace)) write(U" ");
    write(indicator);
    whitespace_ = whitespace;
    indention_ = indention_ && indention;
    open_ended_ = false;
  }

  void write_indent() {
    const int indent = indent_ == kNoIndent ? 0 : indent_;
    if (!indention_ || column_ > indent || (column_ == indent && !whitespace_)) write_line_break();
    if (column_ < indent) {
      whitespace_ = true;
      out_.append(static_cast<std::size_t>(indent - column_), ' ');
      column_ = indent;
    }
  }

  void write_line_break(char32_t br = '\n') {
    whitespace_ = indention_ = true;
    column_ = 0;
    append_utf8(out_, br);
  }

  void write_line_breaks(const std::u32string& text, std::size_t start, std::size_t end) {
    if (text[start] == '\n') write_line_break();
    for (std::size_t i = start; i < end; ++i) write_line_break(text[i]);
  }

  void write_plain(const std::u32string& text, bool split) {
    if (root_context_) open_ended_ = true;
    if (text.empty()) return;
    if (!whitespace_) write(U" ");
    whitespace_ = indention_ = false;
    bool spaces = false, breaks = false;
    const std::u32string_view t = text;
    for (std::size_t start = 0, end = 0; end <= t.size(); ++end) {
      const char32_t ch = end < t.size() ? t[end] : kEnd;
      if (spaces) {
        if (ch != ' ') {
          if (start + 1 == end && column_ > kBestWidth && split) {
            write_indent();
            whitespace_ = indention_ = false;
          } else {
            write(t.substr(start, end - start));
          }
          start = end;
        }
      } else if (breaks) {
        if (!is_break(ch)) {
          write_line_breaks(text, start, end);
          write_indent();
          whitespace_ = indention_ = false;
          start = end;
        }
      } else if (ch == kEnd || ch == ' ' || is_break(ch)) {
        write(t.substr(start, end - start));
        start = end;
      }
      if (ch != kEnd) {
        spaces = ch == ' ';
        breaks = is_break(ch);
      }
    }
  }

  void write_single_quoted(const std::u32string& text, bool split) {
    write_indicator(U"'", true);
    bool spaces = false, breaks = false;
    const std::u32string_view t = text;
    for (std::size_t start = 0, end = 0; end <= t.size(); ++end) {
      const char32_t ch = end < t.size() ? t[end] : kEnd;
      if (spaces) {
        if (ch != ' ') {
          if (start + 1 == end && column_ > kBestWidth && split && start != 0 && end != t.size())
            write_indent();
          else
            write(t.substr(start, end - start));
          start = end;
        }
      } else if (breaks) {
        if (!is_break(ch)) {
          write_line_breaks(text, start, end);
          write_indent();
          start = end;
        }
      } else if (ch == kEnd || ch == ' ' || is_break(ch) || ch == '\'') {
        if (start < end) {
          write(t.substr(start, end - start));
          start = end;
        }
      }
      if (ch == '\'') {
        write(U"''");
        start = end + 1;
      }
      if (ch != kEnd) {
        spaces = ch == ' ';
        breaks = is_break(ch);
      }
    }
    write_indicator(U"'", false);
  }

  static std::u32string escape(char32_t ch) {
    char buf[16];
    switch (ch) {
      case 0:
        return U"\\0";
      case 0x07:
        return U"\\a";
      case 0x08:
        return U"\\b";
      case 0x09:
        return U"\\t";
      case 0x0A:
        return U"\\n";
      case 0x0B:
        return U"\\v";
      case 0x0C:
        return U"\\f";
      case 0x0D:
        return U"\\r";
      case 0x1B:
        return U"\\e";
      case '"':
        return U"\\\"";
      case '\\':
        return U"\\\\";
      case 0x85:
        return U"\\N";
      case 0xA0:
        return U"\\_";
      case 0x2028:
        return U"\\L";
      case 0x2029:
        return U"\\P";
      default:
        break;
    }
    const auto v = static_cast<unsigned>(ch);
    if (ch <= 0xFF)
      std::snprintf(buf, sizeof buf, "\\x%02X", v);
    else if (ch <= 0xFFFF)
      std::snprintf(buf, sizeof buf, "\\u%04X", v);
    else
      std::snprintf(buf, sizeof buf, "\\U%08X", v);
    return std::u32string(buf, buf + std::char_traits<char>::length(buf));
  }

  void write_double_quoted(const std::u32string& text, bool split) {
    write_indicator(U"\"", true);
    const std::u32string_view t = text;
    const std::size_t len = t.size();
    for (std::size_t start = 0, end = 0; end <= len; ++end) {
      const char32_t ch = end < len ? t[end] : kEnd;
      if (ch == kEnd || ch == '"' || ch == '\\' || ch == 0x85 || ch == 0x2028 || ch == 0x2029 ||
          ch == 0xFEFF || !(ch >= 0x20 && ch <= 0x7E)) {
        if (start < end) {
          write(t.substr(start, end - start));
          start = end;
        }
        if (ch != kEnd) {
          write(escape(ch));
          start = end + 1;
        }
      }
      if (0 < end && end + 1 < len && (ch == ' ' || start >= end) &&
          column_ + static_cast<int>(end - start) > kBestWidth && split) {
        if (start < end) {
          write(t.substr(start, end - start));
          start = end;
        }
        write(U"\\");
        write_indent();
        whitespace_ = indention_ = false;
        if (t[start] == ' ') write(U"\\");
      }
    }
    write_indicator(U"\"", false);
  }

  std::string out_;
  int column_ = 0;
  bool whitespace_ = true;
  bool indention_ = true;
  bool open_ended_ = false;
  int indent_ = kNoIndent;
  std::vector<int> indents_;
  int flow_level_ = 0;
  bool root_context_ = false;
  bool mapping_context_ = false;
  bool simple_key_context_ = false;
};

}  // namespace

std::string to_pyyaml(const json& value) {
  return Emitter().run(value);
}

}  // namespace dispatcherctl
