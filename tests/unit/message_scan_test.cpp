// Main's one-pass task scanner (message_scan.h): it must take the fast path on the messages
// publishers send, decline everything the parsed path has to judge, and never disagree with
// the parsed path (upstream-spec §2.1, §2.2, §8.1). scan_oracle.h is the comparison.

#include "dispatcherd/message_scan.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "scan_oracle.h"

namespace dispatcherd {
namespace {

using testing::scan_agrees_with_parse;

// Messages as upstream's publisher and ours write them, and variations on every field.
const std::vector<std::string> kTaskMessages = {
    R"({"uuid": "9760671a-6261-45aa-881a-f66929ff9725", "args": [4], "kwargs": {}, "task": "tests.data.methods.sleep_function", "time_pub": 1727354869.51, "guid": null})",
    R"({"task":"dispatcherd.builtin.noop","uuid":"u-1"})",
    R"({"task": "a", "args": [], "kwargs": {"wiki": "enwiki", "n": 3, "f": 1.5e3, "neg": -0.25}})",
    R"({"task": "a", "on_duplicate": "serial", "timeout": 10, "delay": 0.5, "callbacks": [{"task": "b"}], "errbacks": null})",
    R"({"task": "a", "on_duplicate": "discard"})",
    R"({"task": "a", "on_duplicate": "queue_one"})",
    R"({"task": "a", "on_duplicate": "parallel", "uuid": null, "timeout": null, "delay": null})",
    R"({"task": "a", "on_duplicate": "sometimes"})",
    R"({"task": "caf\u00e9", "args": ["\ud83d\ude00", "\"quoted\"", "tab\there", "\u0000", "\/"]})",
    "{\"task\": \"caf\xc3\xa9\", \"kwargs\": {\"k\": \"\xf0\x9f\x98\x80\"}}",
    R"({"task": "a", "kwargs": {"b": 1, "a": [true, false, null, {"x": {}}, []]}})",
    R"({"task": "a", "args": [123456789012345678901234567890, -9223372036854775809, 18446744073709551615, 1E+2, 0.1e-5]})",
    " \t\r\n{\"task\": \"a\"} \n",
    R"({"task": "a", "extra": {"deep": [[[[1]]]], "x": "y"}, "extra": 2})",
};

// Texts the scanner must leave to the parsed path: not JSON, not an object, control and chunk
// messages, fields of the wrong type, repeated fields, and the cases nlohmann refuses.
const std::vector<std::string> kDeclined = {
    "",
    "lambda: \"This worked!\"",
    R"(["task"])",
    R"({"task": "a")",
    R"({"task": "a"} x)",
    "\xEF\xBB\xBF{\"task\": \"a\"}",
    R"({"control": "running", "reply_to": "r"})",
    R"({"task": "a", "__dispatcherd_chunk__": {}})",
    R"({"args": []})",
    R"({"task": ""})",
    R"({"task": 1})",
    R"({"task": "a", "uuid": 5})",
    R"({"task": "a", "args": {}})",
    R"({"task": "a", "args": null})",
    R"({"task": "a", "kwargs": []})",
    R"({"task": "a", "timeout": -1})",
    R"({"task": "a", "timeout": true})",
    R"({"task": "a", "delay": "5"})",
    R"({"task": "a", "on_duplicate": 1})",
    R"({"task": "a", "callbacks": {}})",
    R"({"task": "a", "task": "b"})",
    R"({"task": "a", "kwargs": {"k": 1, "k": 2}})",
    R"({"t\u0061sk": "a"})",
    R"({"task": "a", "args": ["\ud800"]})",
    R"({"task": "a", "args": ["\udc00"]})",
    R"({"task": "a", "args": [1e999]})",
    R"({"task": "a", "x": [01]})",
    R"({"task": "a", "x": [1.]})",
    R"({"task": "a", "x": [.5]})",
    R"({"task": "a", "x": [+1]})",
    R"({"task": "a", "x": "\x"})",
    "{\"task\": \"a\", \"x\": \"\x01\"}",
    "{\"task\": \"a\", \"x\": \"\xc0\xaf\"}",
    "{\"task\": \"a\", \"x\": \"\xed\xa0\x80\"}",
    "{\"task\": \"a\", \"x\": \"\xf4\x90\x80\x80\"}",
    R"({"task": "a", "x": tru})",
    R"({"task": "a", "x": [1,]})",
    R"({"task": "a",})",
};

TEST(MessageScan, Spec2_2_TakesTheFastPathOnTaskMessages) {
  for (const auto& text : kTaskMessages) {
    SCOPED_TRACE(text);
    EXPECT_TRUE(scan_task_message(text).has_value());
    EXPECT_EQ(scan_agrees_with_parse(text), "");
  }
}

TEST(MessageScan, Spec2_2_LeavesEverythingElseToTheParsedPath) {
  for (const auto& text : kDeclined) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(scan_task_message(text).has_value());
  }
}

TEST(MessageScan, Spec2_2_ReadsEveryField) {
  auto s = scan_task_message(
      R"({"task": "caf\u00e9", "uuid": "u", "timeout": 2.5, "delay": 1, "on_duplicate": "queue_one"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->fields.task, "caf\xc3\xa9");
  EXPECT_EQ(s->fields.uuid, "u");
  EXPECT_EQ(s->fields.timeout, 2.5);
  EXPECT_EQ(s->fields.delay, 1.0);
  EXPECT_EQ(s->fields.on_duplicate, OnDuplicate::QueueOne);
  EXPECT_FALSE(s->fields.on_duplicate_unknown);
}

TEST(MessageScan, Spec7_10_FollowupsAndSelfCheckNeedTheParsedMessage) {
  for (const char* text :
       {R"({"task": "a", "callbacks": [{"task": "b"}]})", R"({"task": "a", "errbacks": []})",
        R"({"task": "a", "self_check": true})"}) {
    auto s = scan_task_message(text);
    ASSERT_TRUE(s) << text;
    EXPECT_TRUE(s->needs_tree) << text;
  }
  auto plain =
      scan_task_message(R"({"task": "a", "callbacks": null, "errbacks": null, "args": [1]})");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->needs_tree);
}

TEST(MessageScan, Spec8_1_IdentityIgnoresKeyOrderAndNumberSpelling) {
  auto a = scan_task_message(R"({"task": "t", "args": [1, 2.0], "kwargs": {"a": 1, "b": [2]}})");
  auto b =
      scan_task_message(R"({"kwargs": {"b": [2.0], "a": 1e0}, "args": [1.0, 2], "task": "t"})");
  auto c = scan_task_message(R"({"task": "t", "args": [2, 1], "kwargs": {"a": 1, "b": [2]}})");
  auto d =
      scan_task_message(R"({"task": "t", "args": [1, 2], "kwargs": {"a": 1, "b": [2], "c": 0}})");
  ASSERT_TRUE(a && b && c && d);
  EXPECT_EQ(a->identity, b->identity);
  EXPECT_NE(a->identity, c->identity);
  EXPECT_NE(a->identity, d->identity);
  EXPECT_EQ(
      a->identity,
      identity_hash(json::parse(R"({"task": "t", "args": [1, 2], "kwargs": {"b": [2], "a": 1}})")));
}

TEST(MessageScan, Spec8_1_NestingBeyondTheScanLimitTakesTheParsedPath) {
  std::string shallow = std::string(kScanMaxDepth - 1, '[') + std::string(kScanMaxDepth - 1, ']');
  std::string deep = std::string(kScanMaxDepth + 1, '[') + std::string(kScanMaxDepth + 1, ']');
  EXPECT_TRUE(scan_task_message(R"({"task": "a", "args": )" + shallow + "}"));
  EXPECT_FALSE(scan_task_message(R"({"task": "a", "args": )" + deep + "}"));
}

// Every message above, mutated byte by byte with a fixed seed: wherever the scanner vouches,
// it agrees with the parsed path (the fuzz target fuzz_scan does the same without a bound).
TEST(MessageScan, Spec2_1_AgreesWithTheParsedPathOnMutatedMessages) {
  std::mt19937 rng(20261122);
  const std::string alphabet =
      "{}[]\",:\\u0123456789abcdefEe.+- \t\ntruefalsnl\x01\xc3\xa9\xed\xf0\x80";
  std::vector<std::string> seeds = kTaskMessages;
  seeds.insert(seeds.end(), kDeclined.begin(), kDeclined.end());
  int vouched = 0;
  for (int round = 0; round < 100000; ++round) {
    std::string text = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng() % text.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          text.erase(at, 1);
          break;
      }
    }
    const std::string diff = scan_agrees_with_parse(text);
    ASSERT_EQ(diff, "") << "text: " << text;
    if (scan_task_message(text)) ++vouched;
  }
  // The mutations must leave plenty of valid messages, or this test proves nothing.
  EXPECT_GT(vouched, 5000);
}

}  // namespace
}  // namespace dispatcherd
