// config_detail::kind_of resolves plain scalars with hand-written matchers (std::regex took
// ~10 M instructions to compile its three patterns at every service start). Here they are
// checked against those patterns, run by std::regex as kind_of used to: every string up to
// three characters over an alphabet of the characters they care about, every one-character
// edit of strings near their edges, and random strings.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <random>
#include <regex>
#include <string>
#include <vector>

#include "common/src/config_yaml.h"

namespace dispatcherd::config_detail {
namespace {

// kind_of's rules as PyYAML's patterns (resolver.py), tried in this order. The float pattern is
// the current resolver.py's (`\.[0-9][0-9_]*`); the loader's regex had an older `\.[0-9_]+`,
// under which `._` was a float.
Kind reference(const std::string& s) {
  static const std::regex bool_re(
      "yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF");
  static const std::regex int_re(
      "[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
      "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+");
  static const std::regex float_re(
      "[-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+][0-9]+)?|\\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
      "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN)");
  if (s.size() > 100) return Kind::String;
  if (std::regex_match(s, bool_re)) return Kind::Bool;
  if (std::regex_match(s, int_re)) return Kind::Int;
  if (std::regex_match(s, float_re)) return Kind::Float;
  return Kind::String;
}

// Digits on both sides of the 0-5, 0-7 and 1-9 boundaries, and every other character some
// pattern names.
const std::string kAlphabet = "0156789_-+.:eExbaFnNfiIoOyYsStTrRuUlL \n";

void expect_same(const std::string& s) {
  // A node built from a string is a plain (untagged) scalar, as an unquoted one in a file.
  EXPECT_EQ(kind_of(YAML::Node(s)), reference(s)) << '"' << s << '"';
}

TEST(ConfigKind, AgreesWithResolverPatternsOnEveryShortString) {
  // One character of each class kAlphabet distinguishes, to keep this in milliseconds.
  const std::string alphabet = "018_-+.:ebxanNo";
  std::vector<std::string> level = {""};
  for (int len = 0; len <= 3; ++len) {
    std::vector<std::string> next;
    for (const std::string& s : level) {
      if (!s.empty()) expect_same(s);  // an empty plain scalar is yaml-cpp's null
      for (char c : alphabet) next.push_back(s + c);
    }
    level = std::move(next);
  }
}

TEST(ConfigKind, AgreesWithResolverPatternsNearTheirEdges) {
  const std::vector<std::string> seeds = {
      "yes",    "Off", "FALSE", "On",        "-1_000", "+0",    "0",          "0b1_0",
      "-0x_Fa", "017", "0_7",   "190:20:30", "1:5:59", "-1:30", "1_0.5_e-12", "+1.",
      ".5e+3",  ".5_", "._",    "-.inf",     "+.INF",  ".NaN",  "1:59.5",     "190:20:30.15"};
  for (const std::string& seed : seeds) {
    expect_same(seed);
    for (std::size_t i = 0; i <= seed.size(); ++i) {
      if (i < seed.size() && seed.size() > 1) expect_same(seed.substr(0, i) + seed.substr(i + 1));
      for (char c : kAlphabet) {
        expect_same(seed.substr(0, i) + c + seed.substr(i));
        if (i < seed.size()) expect_same(seed.substr(0, i) + c + seed.substr(i + 1));
      }
    }
  }
}

TEST(ConfigKind, AgreesWithResolverPatternsOnRandomStrings) {
  std::mt19937 rng(8);  // fixed: a failure names its string and reproduces
  // The second alphabet is mostly what numbers are made of, so that more of the strings
  // come close to matching.
  for (const std::string& alphabet : {kAlphabet, std::string("0123456789000--::.._eE+x")}) {
    std::uniform_int_distribution<std::size_t> len(1, 26), pick(0, alphabet.size() - 1);
    for (int n = 0; n < 4000; ++n) {
      std::string s(len(rng), ' ');
      for (char& c : s) c = alphabet[pick(rng)];
      expect_same(s);
    }
  }
}

TEST(ConfigKind, LongScalarsAreStrings) {
  EXPECT_EQ(kind_of(YAML::Node(std::string(101, '1'))), Kind::String);
  EXPECT_EQ(kind_of(YAML::Node(std::string(100, '1'))), Kind::Int);
}

}  // namespace
}  // namespace dispatcherd::config_detail
