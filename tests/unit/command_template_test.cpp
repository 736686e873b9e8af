// Expansion of command task argv templates (DESIGN §2 "command tasks"): pure, no processes.
#include "dispatcherd/worker/command_template.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dispatcherd::worker {
namespace {

using nlohmann::json;
using Argv = std::vector<std::string>;

CommandTaskConfig cmd(Argv command, std::map<std::string, std::string> patterns = {}) {
  CommandTaskConfig c;
  c.command = std::move(command);
  c.patterns = std::move(patterns);
  return c;
}

TEST(CommandTemplate, Design2_PlaceholdersAreFilledFromKwargs) {
  auto r = expand_command(cmd({"php", "maintenance/runJobs.php", "--wiki", "{wiki}", "--n={n}"}),
                          {{"wiki", "enwiki"}, {"n", "7"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (Argv{"php", "maintenance/runJobs.php", "--wiki", "enwiki", "--n=7"}));
}

TEST(CommandTemplate, Design2_SamePlaceholderTwiceAndSeveralInOneElement) {
  auto r = expand_command(cmd({"echo", "{a}-{b}-{a}"}), {{"a", "x"}, {"b", "y"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (Argv{"echo", "x-y-x"}));
}

TEST(CommandTemplate, Design2_MissingKwargIsAnError) {
  auto r = expand_command(cmd({"php", "--wiki", "{wiki}"}), {{"other", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("missing kwarg 'wiki'"), std::string::npos) << r.error().message;
}

TEST(CommandTemplate, Design2_MissingKwargsObjectIsAnErrorOnlyWhenAPlaceholderNeedsIt) {
  EXPECT_FALSE(expand_command(cmd({"run", "{x}"}), json::object()).ok());
  EXPECT_FALSE(expand_command(cmd({"run", "{x}"}), nullptr).ok());
  auto r = expand_command(cmd({"run", "--all"}), nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (Argv{"run", "--all"}));
}

TEST(CommandTemplate, Design2_NonStringsAreJsonEncoded) {
  json kw = {{"i", 5},
             {"f", 1.5},
             {"b", true},
             {"n", nullptr},
             {"l", {1, "two"}},
             {"o", {{"k", "v"}}},
             {"s", "plain \"text\""}};
  auto r = expand_command(cmd({"p", "{i}", "{f}", "{b}", "{n}", "{l}", "{o}", "{s}"}), kw);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (Argv{"p", "5", "1.5", "true", "null", R"([1,"two"])", R"({"k":"v"})",
                      "plain \"text\""}));
}

TEST(CommandTemplate, Design2_BracesEscape) {
  auto r = expand_command(cmd({"p", "{{literal}}", "{{{x}}}", "a}}b{{c"}), {{"x", "v"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (Argv{"p", "{literal}", "{v}", "a}b{c"}));
}

TEST(CommandTemplate, Design2_ValuesAreNotExpandedAgain) {
  // A value that looks like a placeholder or an escape stays exactly as sent.
  auto r = expand_command(cmd({"p", "{a}"}), {{"a", "{b} {{"}, {"b", "no"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (Argv{"p", "{b} {{"}));
}

TEST(CommandTemplate, Design2_UnbalancedBracesAreErrors) {
  EXPECT_FALSE(expand_command(cmd({"p", "{x"}), {{"x", "v"}}).ok());
  EXPECT_FALSE(expand_command(cmd({"p", "x}"}), {{"x", "v"}}).ok());
}

TEST(CommandTemplate, Design2_PatternMustMatchWholeValue) {
  auto c = cmd({"php", "--wiki", "{wiki}"}, {{"wiki", "^[a-z]+$"}});
  EXPECT_TRUE(expand_command(c, {{"wiki", "enwiki"}}).ok());
  auto r = expand_command(c, {{"wiki", "x y"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "kwarg 'wiki' value 'x y' does not match pattern '^[a-z]+$'");
  // No anchors in the pattern: still the whole value (regex_match, not regex_search).
  auto unanchored = cmd({"p", "{wiki}"}, {{"wiki", "[a-z]+"}});
  EXPECT_TRUE(expand_command(unanchored, {{"wiki", "abc"}}).ok());
  EXPECT_FALSE(expand_command(unanchored, {{"wiki", "abc; rm -rf /"}}).ok());
}

TEST(CommandTemplate, Design2_PatternAppliesToTheJsonTextOfNonStrings) {
  auto c = cmd({"p", "{n}"}, {{"n", "[0-9]+"}});
  EXPECT_TRUE(expand_command(c, {{"n", 42}}).ok());
  EXPECT_FALSE(expand_command(c, {{"n", -1}}).ok());
  EXPECT_FALSE(expand_command(c, {{"n", {1}}}).ok());
}

TEST(CommandTemplate, Design2_LongValuesAreRefusedWhenAPatternApplies) {
  // std::regex matches recursively: a huge value must fail cleanly, not overflow the stack.
  auto c = cmd({"p", "{v}"}, {{"v", "(a|b)*"}});
  const std::string big(kMaxPatternValueBytes + 1, 'a');
  auto r = expand_command(c, {{"v", big}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("kwarg 'v'"), std::string::npos);
  EXPECT_LT(r.error().message.size(), 300u);
  EXPECT_TRUE(expand_command(c, {{"v", std::string(kMaxPatternValueBytes, 'a')}}).ok());
  // Without a pattern any length is passed through.
  auto free = expand_command(cmd({"p", "{v}"}), {{"v", std::string(1 << 20, 'x')}});
  ASSERT_TRUE(free.ok());
  EXPECT_EQ((*free)[1].size(), 1u << 20);
}

TEST(CommandTemplate, Design2_MismatchMessageQuotesAShortExcerptOfTheValue) {
  auto c = cmd({"p", "{v}"}, {{"v", "[a-z]+"}});
  auto r = expand_command(c, {{"v", std::string(900, 'A')}});
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.error().message.size(), 400u);
  EXPECT_NE(r.error().message.find("(900 bytes)"), std::string::npos) << r.error().message;
}

TEST(CommandTemplate, Design2_ValueIsOneArgumentNoShell) {
  const std::string nasty = "a b; rm -rf / && echo $(id) `id` 'q' \"dq\" \n*";
  auto r = expand_command(cmd({"prog", "{v}", "--x={v}"}), {{"v", nasty}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[1], nasty);
  EXPECT_EQ((*r)[2], "--x=" + nasty);
  // An empty value is still one (empty) argument, not dropped.
  auto e = expand_command(cmd({"prog", "{v}", "end"}), {{"v", ""}});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, (Argv{"prog", "", "end"}));
}

TEST(CommandTemplate, Design2_NulByteInAValueIsAnError) {
  auto r = expand_command(cmd({"p", "{v}"}), {{"v", std::string("a\0b", 3)}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("NUL"), std::string::npos);
}

TEST(CommandTemplate, Design2_ProgramNameMustNotExpandToEmpty) {
  EXPECT_FALSE(expand_command(cmd({"{prog}"}), {{"prog", ""}}).ok());
  auto r = expand_command(cmd({"{prog}", "x"}), {{"prog", "/bin/echo"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (Argv{"/bin/echo", "x"}));
}

TEST(CommandTemplate, KwargTextOfInvalidUtf8InsideAnObjectDoesNotThrow) {
  json v = {{"k", std::string("\xff\xfe")}};
  EXPECT_NO_THROW(kwarg_text(v));
  EXPECT_EQ(kwarg_text(json(std::string("\xff"))), "\xff");  // strings pass verbatim
}

}  // namespace
}  // namespace dispatcherd::worker
