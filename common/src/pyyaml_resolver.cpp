#include "dispatcherd/pyyaml_resolver.h"

#include <initializer_list>

namespace dispatcherd::pyyaml {

namespace {

// Resolver.add_implicit_resolver of resolver.py, one matcher per pattern (re.X whitespace
// removed), each a full match. Hand-written rather than std::regex: compiling the patterns
// cost dispatcherctl ~18 M instructions per run and every config load ~10 M.
// Every repetition below is followed by a character it cannot consume, so consuming the
// longest run never needs backtracking. tests/unit/yaml_scalars_test.cpp and
// config_kind_test.cpp check them against the patterns themselves.

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_digit_(char c) {
  return is_digit(c) || c == '_';
}
bool is_bin_(char c) {
  return c == '0' || c == '1' || c == '_';
}
bool is_oct_(char c) {
  return (c >= '0' && c <= '7') || c == '_';
}
bool is_hex_(char c) {
  return is_digit_(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

struct Cursor {
  std::string_view s;
  std::size_t i = 0;

  bool done() const { return i == s.size(); }
  bool eat(char c) {
    if (i == s.size() || s[i] != c) return false;
    ++i;
    return true;
  }
  bool eat_one_of(std::string_view set) {
    if (i == s.size() || set.find(s[i]) == std::string_view::npos) return false;
    ++i;
    return true;
  }
  // Consumes the longest run of characters satisfying `p`; returns its length.
  std::size_t run(bool (*p)(char)) {
    const std::size_t from = i;
    while (i < s.size() && p(s[i])) ++i;
    return i - from;
  }
};

bool one_of(std::string_view s, std::initializer_list<std::string_view> words) {
  for (std::string_view w : words)
    if (s == w) return true;
  return false;
}

// (?::[0-5]?[0-9])+
bool sexagesimal(Cursor& c) {
  bool any = false;
  while (c.eat(':')) {
    const std::size_t from = c.i;
    const std::size_t n = c.run(is_digit);
    if (n == 0 || n > 2 || (n == 2 && c.s[from] > '5')) return false;
    any = true;
  }
  return any;
}

// (?:[eE][-+][0-9]+)?$
bool exponent_then_end(Cursor& c) {
  if (c.done()) return true;
  return c.eat_one_of("eE") && c.eat_one_of("-+") && c.run(is_digit) > 0 && c.done();
}

}  // namespace

// yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
bool is_bool(std::string_view s) {
  return one_of(s, {"yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False",
                    "FALSE", "on", "On", "ON", "off", "Off", "OFF"});
}

// [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
// |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
// |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
// |[-+]?\.(?:inf|Inf|INF)
// |\.(?:nan|NaN|NAN)
bool is_float(std::string_view s) {
  Cursor c{s};
  const bool sign = c.eat_one_of("-+");
  if (c.eat('.')) {
    const std::string_view rest = s.substr(c.i);
    if (one_of(rest, {"inf", "Inf", "INF"})) return true;
    if (!sign && one_of(rest, {"nan", "NaN", "NAN"})) return true;
    if (sign || c.run(is_digit) == 0) return false;
    c.run(is_digit_);
    return exponent_then_end(c);
  }
  if (c.run(is_digit) == 0) return false;
  c.run(is_digit_);
  if (c.i < s.size() && s[c.i] == ':') {
    if (!sexagesimal(c) || !c.eat('.')) return false;
    c.run(is_digit_);
    return c.done();
  }
  if (!c.eat('.')) return false;
  c.run(is_digit_);
  return exponent_then_end(c);
}

// [-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+
// | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
bool is_int(std::string_view s) {
  Cursor c{s};
  c.eat_one_of("-+");
  if (c.eat('0')) {
    if (c.done()) return true;
    if (c.eat('b')) return c.run(is_bin_) > 0 && c.done();
    if (c.eat('x')) return c.run(is_hex_) > 0 && c.done();
    return c.run(is_oct_) > 0 && c.done();
  }
  if (!c.eat_one_of("123456789")) return false;
  c.run(is_digit_);
  return c.done() || (sexagesimal(c) && c.done());
}

// [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
// |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]
//  :[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?
bool is_timestamp(std::string_view s) {
  Cursor c{s};
  if (c.run(is_digit) != 4 || !c.eat('-')) return false;
  const std::size_t month = c.run(is_digit);
  if (month < 1 || month > 2 || !c.eat('-')) return false;
  const std::size_t day = c.run(is_digit);
  if (day < 1 || day > 2) return false;
  if (c.done()) return month == 2 && day == 2;
  if (!c.eat_one_of("Tt") && c.run(is_blank) == 0) return false;
  const std::size_t hour = c.run(is_digit);
  if (hour < 1 || hour > 2 || !c.eat(':')) return false;
  if (c.run(is_digit) != 2 || !c.eat(':') || c.run(is_digit) != 2) return false;
  if (c.eat('.')) c.run(is_digit);
  if (c.done()) return true;
  c.run(is_blank);
  if (c.eat('Z')) return c.done();
  if (!c.eat_one_of("-+")) return false;
  const std::size_t tz_hour = c.run(is_digit);
  if (tz_hour < 1 || tz_hour > 2) return false;
  if (c.eat(':') && c.run(is_digit) != 2) return false;
  return c.done();
}

}  // namespace dispatcherd::pyyaml
