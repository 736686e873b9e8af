// Typed reading of yaml-cpp nodes for the config loader; see config_yaml.h.

#include "config_yaml.h"

#include "dispatcherd/pyyaml_resolver.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

namespace dispatcherd::config_detail {
namespace {

// PyYAML's implicit resolvers (pyyaml_resolver.h). Null is left to yaml-cpp, whose plain-null
// set (~, null, Null, NULL, empty) is the same.
using pyyaml::is_bool;
using pyyaml::is_float;
using pyyaml::is_int;

// Splits off the sign and removes the `_` digit separators YAML 1.1 allows.
std::string strip(std::string_view s, bool& negative) {
  negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  std::string out;
  for (char ch : s)
    if (ch != '_') out.push_back(ch);
  return out;
}

// Text already matched is_int(); nullopt on overflow.
std::optional<std::int64_t> parse_int(std::string_view text) {
  bool negative = false;
  std::string s = strip(text, negative);
  std::uint64_t mag = 0;
  auto parse = [](std::string_view d, int base, std::uint64_t& v) {
    auto [p, ec] = std::from_chars(d.data(), d.data() + d.size(), v, base);
    return ec == std::errc() && p == d.data() + d.size();
  };
  bool ok = true;
  if (s.find(':') != std::string::npos) {  // sexagesimal, e.g. 1:30 == 90
    std::size_t start = 0;
    while (ok && start <= s.size()) {
      std::size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      std::uint64_t part = 0;
      ok = parse(std::string_view(s).substr(start, end - start), 10, part) &&
           !__builtin_mul_overflow(mag, 60u, &mag) && !__builtin_add_overflow(mag, part, &mag);
      start = end + 1;
    }
  } else if (s.rfind("0b", 0) == 0) {
    ok = parse(std::string_view(s).substr(2), 2, mag);
  } else if (s.rfind("0x", 0) == 0) {
    ok = parse(std::string_view(s).substr(2), 16, mag);
  } else if (s.size() > 1 && s[0] == '0') {
    ok = parse(std::string_view(s).substr(1), 8, mag);
  } else {
    ok = parse(s, 10, mag);
  }
  const auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (!ok || mag > max + (negative ? 1 : 0)) return std::nullopt;
  if (negative)
    return mag == max + 1 ? std::numeric_limits<std::int64_t>::min()
                          : -static_cast<std::int64_t>(mag);
  return static_cast<std::int64_t>(mag);
}

// Text already matched is_float().
double parse_float(std::string_view text) {
  bool negative = false;
  std::string s = strip(text, negative);
  double v = 0;
  if (s == ".inf" || s == ".Inf" || s == ".INF") {
    v = std::numeric_limits<double>::infinity();
  } else if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    v = std::numeric_limits<double>::quiet_NaN();
  } else {
    std::size_t colon = s.rfind(':');
    std::string_view frac =
        colon == std::string::npos ? std::string_view(s) : std::string_view(s).substr(colon + 1);
    std::from_chars(frac.data(), frac.data() + frac.size(), v);
    if (colon != std::string::npos) {  // sexagesimal: the leading parts are base-60 digits
      double base = 0;
      std::size_t start = 0;
      while (start < colon) {
        std::size_t end = s.find(':', start);
        base = base * 60 + std::stod(s.substr(start, end - start));
        start = end + 1;
      }
      v += base * 60;
    }
  }
  return negative ? -v : v;
}

std::string fmt_range(std::int64_t v) {
  return std::to_string(v);
}

}  // namespace

Kind kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Kind::Null;
    case YAML::NodeType::Map:
      return Kind::Map;
    case YAML::NodeType::Sequence:
      return Kind::Seq;
    case YAML::NodeType::Scalar:
      break;
  }
  // yaml-cpp tags quoted scalars "!"; an explicit !!str is a string too.
  if (n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str") return Kind::String;
  const std::string& s = n.Scalar();
  // No bool or number is this long (kept from the std::regex days, when a long scalar cost
  // deep recursion; it still spares scanning a long string).
  if (s.size() > 100) return Kind::String;
  if (is_bool(s)) return Kind::Bool;
  if (is_int(s)) return Kind::Int;
  if (is_float(s)) return Kind::Float;
  return Kind::String;
}

std::string excerpt(std::string_view s, std::size_t max) {
  std::string out;
  std::size_t i = 0;
  for (; i < s.size() && i < max; ++i) {
    auto ch = static_cast<unsigned char>(s[i]);
    if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (ch < 0x20 || ch == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[ch >> 4]);
      out.push_back(hex[ch & 15]);
    } else {
      out.push_back(s[i]);
    }
  }
  if (i < s.size()) {
    // Do not cut a UTF-8 sequence: drop trailing continuation bytes and their lead byte.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0xC0) out.pop_back();
    out += "…";
  }
  return out;
}

std::string describe(const YAML::Node& n) {
  switch (kind_of(n)) {
    case Kind::Null:
      return "null";
    case Kind::Bool:
      return "boolean " + n.Scalar();
    case Kind::Int:
      return "integer " + n.Scalar();
    case Kind::Float:
      return "float " + n.Scalar();
    case Kind::String:
      return "string '" + excerpt(n.Scalar()) + "'";
    case Kind::Map:
      return "a mapping";
    case Kind::Seq:
      return "a list";
  }
  return "?";
}

std::string Ctx::where(const YAML::Mark& m) const {
  if (m.is_null()) return file_ + ":1:1: ";
  return file_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": ";
}

void Ctx::fail(const YAML::Mark& m, const std::string& message) const {
  throw ConfigError(where(m) + message);
}

void Ctx::fail(const Field& f, const std::string& message) const {
  fail(kind_of(f.value) == Kind::Null ? f.key_node.Mark() : f.value.Mark(), message);
}

void Ctx::warn(const YAML::Mark& m, const std::string& message) const {
  if (warnings_) warnings_->push_back(where(m) + "warning: " + message);
}

std::vector<Field> Ctx::any_fields(const YAML::Node& node, const std::string& path) const {
  std::vector<Field> out;
  Kind k = kind_of(node);
  if (k == Kind::Null) return out;
  if (k != Kind::Map) fail(node.Mark(), path + " must be a mapping, got " + describe(node));
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar() && !it->first.IsNull())
      fail(it->first.Mark(), "keys in " + path + " must be strings, got " + describe(it->first));
    std::string key = it->first.IsNull() ? "" : it->first.Scalar();
    std::string p = path.empty() ? key : path + "." + key;
    out.push_back(Field{std::move(key), std::move(p), it->first, it->second});
  }
  return out;
}

std::vector<Field> Ctx::fields(const YAML::Node& node, const std::string& path,
                               std::initializer_list<std::string_view> allowed) const {
  std::vector<Field> out = any_fields(node, path);
  for (const Field& f : out) {
    bool known = allowed.size() == 0;
    for (std::string_view a : allowed) known = known || a == f.key;
    if (!known) fail(f.key_node.Mark(), "unknown key '" + excerpt(f.key) + "' in " + path);
  }
  return out;
}

std::int64_t Ctx::get_int(const Field& f, std::int64_t min, std::int64_t max) const {
  if (kind_of(f.value) != Kind::Int)
    fail(f, f.path + " must be an integer, got " + describe(f.value));
  std::optional<std::int64_t> v = parse_int(f.value.Scalar());
  if (!v) fail(f, f.path + " is out of range, got " + describe(f.value));
  if (*v < min || *v > max) {
    if (max == std::numeric_limits<std::int64_t>::max())
      fail(f, f.path + " must be >= " + fmt_range(min) + ", got " + f.value.Scalar());
    fail(f, f.path + " must be between " + fmt_range(min) + " and " + fmt_range(max) + ", got " +
                f.value.Scalar());
  }
  return *v;
}

double Ctx::get_number(const Field& f, double min, bool exclusive) const {
  Kind k = kind_of(f.value);
  double v = 0;
  if (k == Kind::Int) {
    std::optional<std::int64_t> i = parse_int(f.value.Scalar());
    if (!i) fail(f, f.path + " is out of range, got " + describe(f.value));
    v = static_cast<double>(*i);
  } else if (k == Kind::Float) {
    v = parse_float(f.value.Scalar());
    if (!std::isfinite(v)) fail(f, f.path + " must be a finite number, got " + describe(f.value));
  } else {
    fail(f, f.path + " must be a number, got " + describe(f.value));
  }
  std::ostringstream bound;
  bound << min;
  if (exclusive && v <= min)
    fail(f, f.path + " must be > " + bound.str() + ", got " + f.value.Scalar());
  if (!exclusive && v < min)
    fail(f, f.path + " must be >= " + bound.str() + ", got " + f.value.Scalar());
  return v;
}

std::optional<double> Ctx::get_opt_number(const Field& f, double min, bool exclusive) const {
  if (kind_of(f.value) == Kind::Null) return std::nullopt;
  return get_number(f, min, exclusive);
}

bool Ctx::get_bool(const Field& f) const {
  if (kind_of(f.value) != Kind::Bool)
    fail(f, f.path + " must be a boolean, got " + describe(f.value));
  const std::string& s = f.value.Scalar();
  return s == "yes" || s == "Yes" || s == "YES" || s == "true" || s == "True" || s == "TRUE" ||
         s == "on" || s == "On" || s == "ON";
}

std::string Ctx::get_string(const Field& f) const {
  if (kind_of(f.value) != Kind::String)
    fail(f, f.path + " must be a string, got " + describe(f.value));
  return f.value.Scalar();
}

std::optional<std::string> Ctx::get_opt_string(const Field& f) const {
  if (kind_of(f.value) == Kind::Null) return std::nullopt;
  if (kind_of(f.value) != Kind::String)
    fail(f, f.path + " must be a string or null, got " + describe(f.value));
  return f.value.Scalar();
}

std::vector<std::string> Ctx::get_string_list(const Field& f) const {
  if (kind_of(f.value) != Kind::Seq)
    fail(f, f.path + " must be a list of strings, got " + describe(f.value));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const YAML::Node item = f.value[i];
    if (kind_of(item) != Kind::String)
      fail(item.IsNull() ? f.value.Mark() : item.Mark(),
           f.path + "[" + std::to_string(i) + "] must be a string, got " + describe(item));
    out.push_back(item.Scalar());
  }
  return out;
}

std::string Ctx::get_scalar_text(const Field& f) const {
  Kind k = kind_of(f.value);
  if (k == Kind::Null || k == Kind::Map || k == Kind::Seq)
    fail(f, f.path + " must be a string or a number, got " + describe(f.value));
  return f.value.Scalar();
}

nlohmann::json Ctx::to_json(const YAML::Node& n, const std::string& path) const {
  switch (kind_of(n)) {
    case Kind::Null:
      return nullptr;
    case Kind::Bool:
      return get_bool(Field{"", path, n, n});
    case Kind::Int: {
      std::optional<std::int64_t> v = parse_int(n.Scalar());
      if (!v) fail(n.Mark(), path + " is out of range, got " + describe(n));
      return *v;
    }
    case Kind::Float: {
      double v = parse_float(n.Scalar());
      // The settings travel as JSON (§6.1), which has no NaN or infinity.
      if (!std::isfinite(v)) fail(n.Mark(), path + " must be a finite number, got " + describe(n));
      return v;
    }
    case Kind::String:
      return n.Scalar();
    case Kind::Map: {
      nlohmann::json obj = nlohmann::json::object();
      for (const Field& f : any_fields(n, path)) obj[f.key] = to_json(f.value, f.path);
      return obj;
    }
    case Kind::Seq: {
      nlohmann::json arr = nlohmann::json::array();
      for (std::size_t i = 0; i < n.size(); ++i)
        arr.push_back(to_json(n[i], path + "[" + std::to_string(i) + "]"));
      return arr;
    }
  }
  return nullptr;
}

namespace {
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxNodes = 200000;
}  // namespace

void Ctx::check_tree(const YAML::Node& root) const {
  std::size_t visited = 0;
  // Recursion is bounded by kMaxDepth, so a self-referencing alias cannot loop forever.
  auto walk = [&](auto& self, const YAML::Node& n, int depth) -> void {
    if (depth > kMaxDepth)
      fail(n.Mark(), "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (++visited > kMaxNodes)
      fail(n.Mark(), "config too large: more than " + std::to_string(kMaxNodes) +
                         " nodes after expanding aliases");
    if (n.IsMap()) {
      std::map<std::string, YAML::Mark> seen;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (it->first.IsScalar() || it->first.IsNull()) {
          std::string key = it->first.IsNull() ? "" : it->first.Scalar();
          auto [pos, fresh] = seen.emplace(key, it->first.Mark());
          if (!fresh)
            fail(it->first.Mark(), "duplicate key '" + excerpt(key) + "' (first defined at line " +
                                       std::to_string(pos->second.line + 1) + ")");
        }
        self(self, it->second, depth + 1);
      }
    } else if (n.IsSequence()) {
      for (std::size_t i = 0; i < n.size(); ++i) self(self, n[i], depth + 1);
    }
  };
  walk(walk, root, 0);
}

}  // namespace dispatcherd::config_detail
