// Message decoding, field reading, identity hashing, Python-compatible dumping and UUIDs
// (upstream-spec §2.1, §2.2, §4.1, §8.1). Expected serializations were produced with
// /usr/bin/python3 json.dumps while writing these tests and are hard-coded here.

#include "dispatcherd/message.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>

namespace dispatcherd {
namespace {

json parse(std::string_view s) {
  return json::parse(s);
}

// ---- §2.1 decoding ---------------------------------------------------------------------

TEST(Decode, Spec2_1_ObjectIsReturnedAsIs) {
  auto r = decode_payload(R"({"task": "a.b", "args": [4], "extra_key": {"x": 1}})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, parse(R"({"task": "a.b", "args": [4], "extra_key": {"x": 1}})"));
}

TEST(Decode, Spec2_1_NonJsonBecomesBareTask) {
  auto r = decode_payload(R"(lambda: "This worked!")");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (json{{"task", R"(lambda: "This worked!")"}}));
  auto empty = decode_payload("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, (json{{"task", ""}}));
  auto truncated = decode_payload(R"({"task": "a.b")");
  ASSERT_TRUE(truncated.ok());
  EXPECT_EQ((*truncated)["task"], R"({"task": "a.b")");
}

TEST(Decode, Spec2_1_NonObjectIsRejected) {
  for (const char* text :
       {"[1, 2]", "5", "\"tests.data.methods.print_hello\"", "true", "null", "  -1.5e3 ", "[]"}) {
    auto r = decode_payload(text);
    EXPECT_FALSE(r.ok()) << text;
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("not an object"), std::string::npos);
    }
  }
}

TEST(Decode, Spec2_1_NumberOverflowBecomesBareTaskWithoutThrowing) {
  for (const char* text : {"1e999", R"({"task": "x", "n": 1e999})", "-1e400"}) {
    auto r = decode_payload(text);
    ASSERT_TRUE(r.ok()) << text;
    EXPECT_EQ((*r)["task"], text);
  }
}

TEST(Decode, Spec2_1_InvalidUtf8InBareTaskIsReplaced) {
  const std::string raw = "lambda: \xff\xfe \xe2\x82 ok \xc3\xa9";
  auto r = decode_payload(raw);
  ASSERT_TRUE(r.ok());
  const std::string task = (*r)["task"];
  EXPECT_EQ(task, "lambda: \xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD ok \xc3\xa9");
  EXPECT_NO_THROW((void)r->dump());  // even nlohmann's strict dump is safe now
  EXPECT_EQ(dump_python(*r), R"({"task": "lambda: \ufffd\ufffd \ufffd\ufffd ok \u00e9"})");
}

TEST(Decode, Spec2_1_Utf8BomIsNotJsonLikePython) {
  auto r = decode_payload("\xEF\xBB\xBF{\"task\": \"a.b\"}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["task"], "\xEF\xBB\xBF{\"task\": \"a.b\"}");
}

TEST(Decode, DeepNestingIsRejectedWithoutCrashing) {
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto r = decode_payload(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("nests deeper"), std::string::npos);
  // Unbalanced brackets are not JSON at all: a bare task, whose text is flat.
  auto bare = decode_payload(std::string(100000, '['));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ((*bare)["task"].get_ref<const std::string&>().size(), 100000u);
}

TEST(Decode, NestingUpToTheLimitIsAccepted) {
  auto nest = [](std::size_t levels) {
    return "{\"a\":" + std::string(levels - 1, '[') + std::string(levels - 1, ']') + "}";
  };
  EXPECT_TRUE(decode_payload(nest(kMaxJsonDepth)).ok());
  EXPECT_FALSE(decode_payload(nest(kMaxJsonDepth + 1)).ok());
  // Brackets inside strings (escaped quotes included) are not nesting.
  const std::string in_string = R"({"task": "\")" + std::string(1000, '[') + "\"}";
  auto r = decode_payload(in_string);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["task"].get_ref<const std::string&>().size(), 1001u);
}

TEST(Decode, Spec2_4_ChunkAndControlAreRecognisedByKey) {
  EXPECT_TRUE(is_chunk(parse(R"({"__dispatcherd_chunk__": null})")));
  EXPECT_FALSE(is_chunk(parse(R"({"task": "x"})")));
  EXPECT_FALSE(is_chunk(parse(R"(["__dispatcherd_chunk__"])")));
  EXPECT_TRUE(is_control(parse(R"({"control": "alive"})")));
  EXPECT_FALSE(is_control(parse(R"({"task": "control"})")));
}

// ---- §2.2 task fields ---------------------------------------------------------------------

TEST(Message, Spec2_2_TaskFieldsDefaults) {
  auto f = read_task_fields(parse(R"({"task": "tests.data.methods.sleep_function"})"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->task, "tests.data.methods.sleep_function");
  EXPECT_FALSE(f->uuid.has_value());
  EXPECT_EQ(f->timeout, 0);
  EXPECT_EQ(f->delay, 0);
  EXPECT_EQ(f->on_duplicate, OnDuplicate::Parallel);
  EXPECT_FALSE(f->on_duplicate_unknown);
}

TEST(Message, Spec2_2_TaskFieldsAreRead) {
  auto f = read_task_fields(parse(
      R"({"task": "a.b", "uuid": "u1", "args": [1], "kwargs": {"k": 2}, "timeout": 1.5,
          "delay": 3, "on_duplicate": "queue_one", "callbacks": [], "errbacks": null})"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->uuid, "u1");
  EXPECT_EQ(f->timeout, 1.5);
  EXPECT_EQ(f->delay, 3);
  EXPECT_EQ(f->on_duplicate, OnDuplicate::QueueOne);
}

TEST(Message, Spec2_2_TypeErrorsNameTheField) {
  struct Case {
    const char* text;
    const char* error;
  };
  for (const Case& c : {
           Case{R"({"task": "a", "args": "x"})", "field 'args' must be an array, got string"},
           Case{R"({"task": "a", "args": null})", "field 'args' must be an array, got null"},
           Case{R"({"task": "a", "kwargs": []})", "field 'kwargs' must be an object, got array"},
           Case{R"({"task": 5})", "field 'task' must be a string, got number"},
           Case{R"({"args": []})", "field 'task' is required"},
           Case{R"({"task": ""})", "field 'task' must not be empty"},
           Case{R"({"task": "a", "uuid": 7})", "field 'uuid' must be a string, got number"},
           Case{R"({"task": "a", "callbacks": {}})",
                "field 'callbacks' must be an array, got object"},
           Case{R"({"task": "a", "errbacks": "x"})",
                "field 'errbacks' must be an array, got string"},
           Case{R"({"task": "a", "on_duplicate": 1})",
                "field 'on_duplicate' must be a string, got number"},
       }) {
    auto f = read_task_fields(parse(c.text));
    ASSERT_FALSE(f.ok()) << c.text;
    EXPECT_EQ(f.error().message, c.error) << c.text;
  }
  EXPECT_FALSE(read_task_fields(json::array()).ok());
}

TEST(Message, Spec2_2_TimeoutAndDelayNoneOrPositive) {
  for (const char* ok : {R"({"task": "a", "timeout": null, "delay": 0})",
                         R"({"task": "a", "timeout": 0.0, "delay": null})"}) {
    auto f = read_task_fields(parse(ok));
    ASSERT_TRUE(f.ok()) << ok;
    EXPECT_EQ(f->timeout, 0);
    EXPECT_EQ(f->delay, 0);
  }
  for (const char* bad : {R"({"task": "a", "timeout": true})", R"({"task": "a", "delay": false})",
                          R"({"task": "a", "timeout": "5"})", R"({"task": "a", "delay": -1})",
                          R"({"task": "a", "timeout": [1]})"}) {
    EXPECT_FALSE(read_task_fields(parse(bad)).ok()) << bad;
  }
  json nan = {{"task", "a"}, {"timeout", std::numeric_limits<double>::quiet_NaN()}};
  EXPECT_FALSE(read_task_fields(nan).ok());
  json inf = {{"task", "a"}, {"delay", std::numeric_limits<double>::infinity()}};
  EXPECT_EQ(read_task_fields(inf).error().message, "field 'delay' must be finite");
}

TEST(Message, Spec8_1_UnknownOnDuplicateIsParallel) {
  auto f = read_task_fields(parse(R"({"task": "a", "on_duplicate": "sometimes"})"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->on_duplicate, OnDuplicate::Parallel);
  EXPECT_TRUE(f->on_duplicate_unknown);
  for (OnDuplicate d :
       {OnDuplicate::Parallel, OnDuplicate::Discard, OnDuplicate::Serial, OnDuplicate::QueueOne}) {
    json m = {{"task", "a"}, {"on_duplicate", on_duplicate_name(d)}};
    auto g = read_task_fields(m);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g->on_duplicate, d);
    EXPECT_FALSE(g->on_duplicate_unknown);
  }
}

// ---- §4.1 control fields ------------------------------------------------------------------

TEST(Message, Spec4_1_ControlFieldsDefaults) {
  auto f = read_control_fields(parse(R"({"control": "alive"})"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->command, "alive");
  EXPECT_EQ(f->data, json::object());
  EXPECT_EQ(f->reply_to, "");
  EXPECT_EQ(f->delay, 0);
  auto g = read_control_fields(parse(
      R"({"control": "running", "reply_to": "reply_to_1b4e", "control_data": {"uuid": "foobar"},
          "delay": 2})"));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->data, parse(R"({"uuid": "foobar"})"));
  EXPECT_EQ(g->reply_to, "reply_to_1b4e");
  EXPECT_EQ(g->delay, 2);
  EXPECT_TRUE(read_control_fields(parse(R"({"control": "x", "reply_to": null})")).ok());
}

TEST(Message, Spec4_1_ControlTypeErrorsNameTheField) {
  EXPECT_EQ(read_control_fields(parse(R"({"control": 1})")).error().message,
            "field 'control' must be a string, got number");
  EXPECT_EQ(read_control_fields(parse(R"({"control": "x", "control_data": []})")).error().message,
            "field 'control_data' must be an object, got array");
  EXPECT_EQ(read_control_fields(parse(R"({"control": "x", "reply_to": 3})")).error().message,
            "field 'reply_to' must be a string, got number");
  EXPECT_FALSE(read_control_fields(parse(R"({"control": "x", "delay": "1"})")).ok());
  EXPECT_FALSE(read_control_fields(parse(R"({"task": "x"})")).ok());
}

// ---- §8.1 identity ------------------------------------------------------------------------

TEST(Identity, Spec8_1_KeyOrderIsIrrelevant) {
  EXPECT_EQ(
      identity_hash(parse(R"({"task": "a", "kwargs": {"x": 1, "y": [1, {"p": 1, "q": 2}]}})")),
      identity_hash(parse(R"({"kwargs": {"y": [1, {"q": 2, "p": 1}], "x": 1}, "task": "a"})")));
}

TEST(Identity, Spec8_1_MissingArgsDiffersFromEmptyArgs) {
  const auto bare = identity_hash(parse(R"({"task": "a"})"));
  EXPECT_NE(bare, identity_hash(parse(R"({"task": "a", "args": []})")));
  EXPECT_NE(bare, identity_hash(parse(R"({"task": "a", "kwargs": {}})")));
  EXPECT_EQ(bare, identity_hash(parse(R"({"task": "a", "args": null})")));  // missing == null
}

TEST(Identity, Spec8_1_UuidAndOtherKeysDoNotMatter) {
  EXPECT_EQ(identity_hash(parse(R"({"task": "a", "args": [1], "uuid": "u1", "time_pub": 1.5})")),
            identity_hash(parse(R"({"task": "a", "args": [1], "uuid": "u2", "delay": 3})")));
}

TEST(Identity, EqualNumbersHashAlikeAsNlohmannComparesThem) {
  const json a = {{"task", "a"}, {"args", {1, 0.0, 7u}}};
  const json b = {{"task", "a"}, {"args", {1.0, -0.0, 7}}};
  ASSERT_EQ(a["args"], b["args"]);  // the equality the Blocker uses
  EXPECT_EQ(identity_hash(a), identity_hash(b));
}

TEST(Identity, DistinctValuesGetDistinctHashes) {
  std::set<std::uint64_t> seen;
  const std::vector<std::string> texts = {
      R"({"task": "a"})",
      R"({"task": "b"})",
      R"({"task": "a", "args": ["ab", "c"]})",
      R"({"task": "a", "args": ["a", "bc"]})",
      R"({"task": "a", "args": [1]})",
      R"({"task": "a", "args": [[1]]})",
      R"({"task": "a", "args": ["1"]})",
      R"({"task": "a", "args": [true]})",
      R"({"task": "a", "kwargs": {"a": 1}})",
      R"({"task": "a", "kwargs": {"a": [1]}})",
      R"({"task": "a", "args": [{}]})",
      R"({"task": "a", "args": [[]]})",
      R"({"task": "a", "args": [null]})",
      R"({"task": "a", "args": [false]})",
  };
  for (const auto& t : texts) seen.insert(identity_hash(parse(t)));
  EXPECT_EQ(seen.size(), texts.size());
  for (int i = 0; i < 20000; ++i) seen.insert(identity_hash(json{{"task", "t"}, {"args", {i}}}));
  EXPECT_EQ(seen.size(), texts.size() + 20000);
}

// ---- Python-compatible serialization ------------------------------------------------------

TEST(Dump, MatchesPythonJsonDumps) {
  EXPECT_EQ(dump_python(parse(R"({"task":"a.b","args":[1,2.5,"x"],"kwargs":{"k":null,"t":true}})")),
            R"({"args": [1, 2.5, "x"], "kwargs": {"k": null, "t": true}, "task": "a.b"})");
  EXPECT_EQ(dump_python(json{{"s", "\xc3\xa9\xf0\x9f\x98\x80\x01\x7f\"\\/\n\t\b\f\r"}}),
            R"({"s": "\u00e9\ud83d\ude00\u0001\u007f\"\\/\n\t\b\f\r"})");
  EXPECT_EQ(dump_python(
                parse(R"({"a":[],"b":{},"c":[[]],"n":-12345678901234,"u":18446744073709551615})")),
            R"({"a": [], "b": {}, "c": [[]], "n": -12345678901234, "u": 18446744073709551615})");
}

TEST(Dump, FloatsLikePythonRepr) {
  const json floats = {0.1,  1e-07,  3.0,     1e15,   1e16,  1234567890123456.7,
                       -0.0, 5e-324, 1.5e300, 0.0001, 1e-05, 123.456};
  EXPECT_EQ(dump_python(floats),
            "[0.1, 1e-07, 3.0, 1000000000000000.0, 1e+16, 1234567890123456.8, -0.0, 5e-324, "
            "1.5e+300, 0.0001, 1e-05, 123.456]");
  EXPECT_EQ(dump_compact(json{std::nan(""), 1.0}), "[null,1.0]");
}

TEST(Dump, CompactIsAsciiOnlyWithoutSpaces) {
  EXPECT_EQ(dump_compact(parse(R"({"b": [1, "\u00e9"], "a": {"x": null}})")),
            R"({"a":{"x":null},"b":[1,"\u00e9"]})");
}

TEST(Dump, InvalidUtf8IsReplacedNotThrown) {
  json j = {{"k\xff", "a\xc3"}};  // built in-process; nlohmann's dump() would throw here
  EXPECT_EQ(dump_python(j), R"({"k\ufffd": "a\ufffd"})");
  EXPECT_EQ(dump_compact(j), R"({"k\ufffd":"a\ufffd"})");
}

TEST(Dump, RandomValuesRoundTripThroughParse) {
  std::mt19937_64 rng(42);
  auto rand_string = [&] {
    static const char* pieces[] = {
        "a", "\"", "\\", "\n", "\x01", "\x7f", "\xc3\xa9", "\xe6\xbc\xa2", "\xf0\x9f\x98\x8a",
        "/", " ",  "\t"};
    std::string s;
    for (std::size_t n = rng() % 12; n > 0; --n) s += pieces[rng() % std::size(pieces)];
    return s;
  };
  for (int i = 0; i < 500; ++i) {
    json j = json::object();
    for (std::size_t n = rng() % 6; n > 0; --n) {
      switch (rng() % 5) {
        case 0:
          j[rand_string()] = rand_string();
          break;
        case 1:
          j[rand_string()] = static_cast<std::int64_t>(rng());
          break;
        case 2:
          j[rand_string()] = std::ldexp(static_cast<double>(rng() % 100000), int(rng() % 80) - 40);
          break;
        case 3:
          j[rand_string()] = json::array({rand_string(), nullptr, true});
          break;
        default:
          j[rand_string()] = json{{rand_string(), rng() % 2 == 0}};
          break;
      }
    }
    const std::string py = dump_python(j);
    EXPECT_EQ(json::parse(py), j) << py;
    EXPECT_EQ(json::parse(dump_compact(j)), j);
    for (unsigned char ch : py) ASSERT_LT(ch, 0x80) << py;  // ASCII only
  }
}

// ---- UUIDs -------------------------------------------------------------------------------

TEST(Uuid, CanonicalVersion4Forms) {
  const std::string u = uuid4();
  ASSERT_EQ(u.size(), 36u);
  for (std::size_t i : {8u, 13u, 18u, 23u}) EXPECT_EQ(u[i], '-');
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos);
  EXPECT_EQ(u.find_first_not_of("0123456789abcdef-"), std::string::npos);
  const std::string under = uuid4_underscored();
  ASSERT_EQ(under.size(), 36u);
  EXPECT_EQ(under[8], '_');
  EXPECT_EQ(under.find('-'), std::string::npos);
  const std::string hex = uuid4_hex();
  ASSERT_EQ(hex.size(), 32u);
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(hex[12], '4');
}

TEST(Uuid, ManyCallsAreUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) seen.insert(uuid4_hex());
  EXPECT_EQ(seen.size(), 20000u);
}

}  // namespace
}  // namespace dispatcherd
