// dispatcherctl's YAML output against PyYAML: every pair in tests/golden/yaml (NAME.json fed
// to `yaml.dump(value, default_flow_style=False, sort_keys=True)` gave NAME.yaml), plus the
// float and resolver rules the goldens rely on.

#include "yaml_output.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

namespace dispatcherctl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path golden_dir() {
  const char* dir = std::getenv("DISPATCHERD_SOURCE_DIR");
  // CTest sets the variable; when run by hand, fall back to this file's location.
  const fs::path root =
      dir ? fs::path(dir) : fs::path(__FILE__).parent_path().parent_path().parent_path();
  return root / "tests" / "golden" / "yaml";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(YamlOutput, MatchesEveryPyYamlGolden) {
  std::size_t checked = 0;
  for (const auto& entry : fs::directory_iterator(golden_dir())) {
    if (entry.path().extension() != ".json") continue;
    fs::path yaml_path = entry.path();
    yaml_path.replace_extension(".yaml");
    SCOPED_TRACE(entry.path().filename().string());
    ASSERT_TRUE(fs::exists(yaml_path));
    const json value = json::parse(read_file(entry.path()));
    EXPECT_EQ(to_pyyaml(value), read_file(yaml_path));
    ++checked;
  }
  EXPECT_GE(checked, 10u);
}

TEST(YamlOutput, EmptyListAndSimpleReply) {
  EXPECT_EQ(to_pyyaml(json::array()), "[]\n");
  EXPECT_EQ(to_pyyaml(json::parse(R"([{"node_id": "ref-node"}])")), "- node_id: ref-node\n");
}

TEST(YamlOutput, RootScalarsEndTheDocumentExplicitly) {
  // PyYAML marks an open-ended root plain scalar with "...".
  EXPECT_EQ(to_pyyaml(json("foo")), "foo\n...\n");
  EXPECT_EQ(to_pyyaml(json(nullptr)), "null\n...\n");
  EXPECT_EQ(to_pyyaml(json("")), "''\n");
}

TEST(YamlOutput, FloatsPrintLikePyYaml) {
  EXPECT_EQ(pyyaml_float(0.1), "0.1");
  EXPECT_EQ(pyyaml_float(3.0), "3.0");
  EXPECT_EQ(pyyaml_float(1e-7), "1.0e-07");
  EXPECT_EQ(pyyaml_float(1e16), "1.0e+16");
  EXPECT_EQ(pyyaml_float(1.5e16), "1.5e+16");
  EXPECT_EQ(pyyaml_float(1e15), "1000000000000000.0");
  EXPECT_EQ(pyyaml_float(-0.0), "-0.0");
  EXPECT_EQ(pyyaml_float(std::numeric_limits<double>::quiet_NaN()), ".nan");
  EXPECT_EQ(pyyaml_float(std::numeric_limits<double>::infinity()), ".inf");
  EXPECT_EQ(pyyaml_float(-std::numeric_limits<double>::infinity()), "-.inf");
}

TEST(YamlOutput, ResolverFlagsStringsThatWouldReparseAsOtherTypes) {
  for (const char* s : {"",
                        "~",
                        "null",
                        "Null",
                        "NULL",
                        "true",
                        "False",
                        "yes",
                        "NO",
                        "on",
                        "Off",
                        "123",
                        "-7",
                        "+1",
                        "0x1F",
                        "017",
                        "0b101",
                        "1_000",
                        "1:30",
                        "0.5",
                        ".nan",
                        ".5",
                        "1.",
                        "1.0e+5",
                        ".inf",
                        "-.Inf",
                        ".NaN",
                        "2024-01-01",
                        "2024-1-1 10:00:00",
                        "2024-01-01T10:00:00Z",
                        "<<",
                        "=",
                        "!",
                        "&",
                        "*"}) {
    EXPECT_TRUE(pyyaml_resolves_to_non_string(s)) << s;
  }
  for (const char* s : {"a", "1e5", "0o17", "1.2.3", "y", "n", "nulls", "truex", "0x", "1:60",
                        "2024-01", "<<x", "==", "-", "hello world"}) {
    EXPECT_FALSE(pyyaml_resolves_to_non_string(s)) << s;
  }
}

TEST(YamlOutput, QuotingStyles) {
  const json v = {{"int_like", "123"},     {"plain", "abc"},  {"empty", ""},
                  {"accent", "caf\u00e9"}, {"quote", "it's"}, {"lead", " x"}};
  EXPECT_EQ(to_pyyaml(v),
            "accent: \"caf\\xE9\"\n"
            "empty: ''\n"
            "int_like: '123'\n"
            "lead: ' x'\n"
            "plain: abc\n"
            "quote: it's\n");
}

TEST(YamlOutput, InvalidUtf8IsReadAsReplacementCharacter) {
  const json v = json::array({std::string("a\xff")});
  EXPECT_EQ(to_pyyaml(v), "- \"a\\uFFFD\"\n");
}

}  // namespace
}  // namespace dispatcherctl
