// pyyaml_resolves_to_non_string is hand-written (std::regex took ~18 M instructions to
// compile its patterns at every dispatcherctl run). Here it is checked against those
// patterns, resolver.py's, run by std::regex: every string up to three characters over an
// alphabet of the characters they care about, every one-character edit of strings near
// their edges, and random strings.

#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <string>
#include <vector>

#include "yaml_output.h"

namespace dispatcherctl {
namespace {

// What yaml_scalars.cpp did before: resolver.py's implicit resolvers, re.X whitespace
// removed, each tried on the value and on the value without a final "\n".
bool reference(const std::string& plain) {
  static const std::regex kPatterns[] = {
      std::regex("^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE"
                 "|on|On|ON|off|Off|OFF)$"),
      std::regex("^(?:[-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+][0-9]+)?"
                 "|\\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
                 "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*"
                 "|[-+]?\\.(?:inf|Inf|INF)"
                 "|\\.(?:nan|NaN|NAN))$"),
      std::regex("^(?:[-+]?0b[0-1_]+"
                 "|[-+]?0[0-7_]+"
                 "|[-+]?(?:0|[1-9][0-9_]*)"
                 "|[-+]?0x[0-9a-fA-F_]+"
                 "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"),
      std::regex("^(?:<<)$"),
      std::regex("^(?:~|null|Null|NULL|)$"),
      std::regex("^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
                 "|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
                 "(?:[Tt]|[ \\t]+)[0-9][0-9]?"
                 ":[0-9][0-9]:[0-9][0-9](?:\\.[0-9]*)?"
                 "(?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"),
      std::regex("^(?:=)$"),
      std::regex("^(?:!|&|\\*)$"),
  };
  std::string trimmed = plain;
  if (!trimmed.empty() && trimmed.back() == '\n') trimmed.pop_back();
  for (const std::regex& re : kPatterns)
    if (std::regex_match(plain, re) || std::regex_match(trimmed, re)) return true;
  return false;
}

// Digits on both sides of the 0-5, 0-7 and 1-9 boundaries, and every other character some
// pattern names.
const std::string kAlphabet = "015678_-+.:eExbaFTtZ \t\nnN~<=!&*";

void expect_same(const std::string& s) {
  EXPECT_EQ(pyyaml_resolves_to_non_string(s), reference(s)) << '"' << s << '"';
}

TEST(YamlScalars, AgreesWithResolverPatternsOnEveryShortString) {
  // One character of each class kAlphabet distinguishes, to keep this in milliseconds.
  const std::string alphabet = "018_-+.:ebxT \nn~<=!*";
  std::vector<std::string> level = {""};
  for (int len = 0; len <= 3; ++len) {
    std::vector<std::string> next;
    for (const std::string& s : level) {
      expect_same(s);
      for (char c : alphabet) next.push_back(s + c);
    }
    level = std::move(next);
  }
}

TEST(YamlScalars, AgreesWithResolverPatternsNearTheirEdges) {
  const std::vector<std::string> seeds = {"yes",
                                          "Off",
                                          "FALSE",
                                          "null",
                                          "~",
                                          "<<",
                                          "=",
                                          "!",
                                          "&",
                                          "*",
                                          "-1_000",
                                          "+0",
                                          "0",
                                          "0b1_0",
                                          "-0x_Fa",
                                          "017",
                                          "0_7",
                                          "190:20:30",
                                          "1:5:59",
                                          "-1:30",
                                          "1_0.5_e-12",
                                          "+1.",
                                          ".5e+3",
                                          ".5_",
                                          "-.inf",
                                          "+.INF",
                                          ".NaN",
                                          "1:59.5",
                                          "190:20:30.15",
                                          "2001-12-14",
                                          "2001-1-4",
                                          "2001-12-14t21:59:43.10-05:00",
                                          "2001-12-14 21:59:43.10 Z",
                                          "2001-12-15T2:59:43",
                                          "2001-12-14 \t21:59:43+5",
                                          "2002-12-14T21:59:43.",
                                          "2001-12-14 1:00:00 -5:30"};
  for (const std::string& seed : seeds) {
    expect_same(seed);
    expect_same(seed + "\n");
    for (std::size_t i = 0; i <= seed.size(); ++i) {
      if (i < seed.size()) expect_same(seed.substr(0, i) + seed.substr(i + 1));
      for (char c : kAlphabet) {
        expect_same(seed.substr(0, i) + c + seed.substr(i));
        if (i < seed.size()) expect_same(seed.substr(0, i) + c + seed.substr(i + 1));
      }
    }
  }
}

TEST(YamlScalars, AgreesWithResolverPatternsOnRandomStrings) {
  std::mt19937 rng(8);  // fixed: a failure names its string and reproduces
  // The second alphabet is mostly what numbers and timestamps are made of, so that more of
  // the strings come close to matching.
  for (const std::string& alphabet : {kAlphabet, std::string("0123456789000--::._ T+Z")}) {
    std::uniform_int_distribution<std::size_t> len(0, 26), pick(0, alphabet.size() - 1);
    for (int n = 0; n < 4000; ++n) {
      std::string s(len(rng), ' ');
      for (char& c : s) c = alphabet[pick(rng)];
      expect_same(s);
    }
  }
}

}  // namespace
}  // namespace dispatcherctl
