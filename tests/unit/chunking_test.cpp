// The chunking protocol (upstream-spec §2.4) and the `chunks` snapshot (§4.4). Ports upstream's
// tests/unit/test_chunking.py (§13.1); expected envelopes were produced with python3 running
// upstream's algorithm with a fixed message id, and are hard-coded here.

#include "dispatcherd/chunking.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "dispatcherd/log.h"
#include "dispatcherd/message.h"

namespace dispatcherd {
namespace {

using json = nlohmann::json;
using Outcome = ChunkAccumulator::Outcome;

const std::string kId = "0123456789abcdef0123456789abcdef";

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::vector<std::string> split_ok(std::string_view message, std::size_t max_bytes,
                                  std::string id = {}) {
  auto r = split_message(message, max_bytes, std::move(id));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : std::vector<std::string>{};
}

// Checks every piece against the wire rules and returns the concatenated payloads.
std::string check_and_join(const std::vector<std::string>& chunks, std::size_t max_bytes) {
  std::string joined;
  std::string id;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LE(chunks[i].size(), max_bytes);
    for (unsigned char c : chunks[i]) EXPECT_LT(c, 0x80);
    const json env = json::parse(chunks[i]);
    EXPECT_EQ(env["__dispatcherd_chunk__"], "v1");
    if (i == 0) id = env["message_id"];
    EXPECT_EQ(env["message_id"], id);
    EXPECT_EQ(env["index"], i);
    EXPECT_EQ(env["total"], chunks.size());
    EXPECT_FALSE(env["payload"].get_ref<const std::string&>().empty());
    joined += env["payload"].get<std::string>();
  }
  return joined;
}

// Quiets the drop/expiry log lines of the accumulator for one test.
struct QuietLog {
  QuietLog() { log::set_level(log::Level::Critical); }
  ~QuietLog() { log::set_level(log::Level::Info); }
};

std::vector<json> chunk_objects(const std::string& message, std::size_t max_bytes) {
  std::vector<json> out;
  for (const auto& c : split_ok(message, max_bytes)) out.push_back(json::parse(c));
  return out;
}

json chunk(std::string id, std::int64_t index, std::int64_t total, std::string payload) {
  return {{"__dispatcherd_chunk__", "v1"},
          {"message_id", std::move(id)},
          {"index", index},
          {"total", total},
          {"payload", std::move(payload)}};
}

// ---- split_message ------------------------------------------------------------------------

TEST(Chunking, Spec2_4_ExactSizePassesThroughUnchanged) {
  const std::string payload = R"({"data":"xyz"})";
  EXPECT_EQ(split_ok(payload, payload.size()), std::vector<std::string>{payload});
}

TEST(Chunking, Spec2_4_SplitsAbove7999Bytes) {
  const std::string head = R"({"task": "x", "args": [")";
  const std::string tail = R"("]})";
  const std::string at_limit = head + std::string(7999 - head.size() - tail.size(), 'a') + tail;
  ASSERT_EQ(at_limit.size(), 7999u);
  EXPECT_EQ(split_ok(at_limit, kPgNotifyMaxBytes).size(), 1u);
  const std::string over = head + std::string(8000 - head.size() - tail.size(), 'a') + tail;
  const auto chunks = split_ok(over, kPgNotifyMaxBytes);
  EXPECT_EQ(chunks.size(), 2u);
  EXPECT_EQ(check_and_join(chunks, kPgNotifyMaxBytes), over);
}

TEST(Chunking, Spec2_4_PieceCountsMatchUpstream) {
  const std::string big = R"({"task": "x", "args": [")" + std::string(20000, 'a') + R"("]})";
  EXPECT_EQ(split_ok(big, kPgNotifyMaxBytes).size(), 3u);
  EXPECT_EQ(split_ok(big, kSocketMaxBytes).size(), 23u);
}

TEST(Chunking, Spec2_4_NeverCutsMultibyte) {
  const std::string payload =
      R"({"data":")" + repeat("\xc3\xa9\xf0\x9f\x98\x8a\xe6\xbc\xa2\xe5\xad\x97", 30) + R"("})";
  const auto chunks = split_ok(payload, 256, kId);
  ASSERT_EQ(chunks.size(), 7u);
  EXPECT_EQ(check_and_join(chunks, 256), payload);
  // Byte for byte what Python's split_message produces with this message id.
  EXPECT_EQ(chunks[0],
            R"({"__dispatcherd_chunk__":"v1","message_id":"0123456789abcdef0123456789abcdef",)"
            R"("index":0,"total":7,"payload":"{\"data\":\"\u00e9\ud83d\ude0a\u6f22\u5b57\u00e9)"
            R"(\ud83d\ude0a\u6f22\u5b57\u00e9\ud83d\ude0a\u6f22\u5b57\u00e9\ud83d\ude0a\u6f22)"
            R"(\u5b57\u00e9"})");
  EXPECT_EQ(chunks[6],
            R"({"__dispatcherd_chunk__":"v1","message_id":"0123456789abcdef0123456789abcdef",)"
            R"("index":6,"total":7,"payload":"\u5b57\u00e9\ud83d\ude0a\u6f22\u5b57\u00e9\ud83d)"
            R"(\ude0a\u6f22\u5b57\u00e9\ud83d\ude0a\u6f22\u5b57\"}"})");
}

TEST(Chunking, Spec2_4_EscapesNeedNoBacktracking) {
  const std::string payload = R"({"data":")" + repeat(R"(\"quoted\" segment\n)", 50) + R"("})";
  const auto chunks = split_ok(payload, 300, kId);
  ASSERT_EQ(chunks.size(), 7u);
  EXPECT_EQ(check_and_join(chunks, 300), payload);
  EXPECT_EQ(chunks[1],
            R"({"__dispatcherd_chunk__":"v1","message_id":"0123456789abcdef0123456789abcdef",)"
            R"("index":1,"total":7,"payload":"t\\n\\\"quoted\\\" segment\\n\\\"quoted\\\" )"
            R"(segment\\n\\\"quoted\\\" segment\\n\\\"quoted\\\" segment\\n\\\"quoted\\\" )"
            R"(segment\\n\\\"quoted\\\" segment\\n\\\"quoted\\\" segment\\n\\\""})");
}

TEST(Chunking, Spec2_4_TooSmallBudgetsAreErrors) {
  const std::string astral = R"({"data":")" + repeat("\xf0\x9f\x98\x8a", 60) + R"("})";
  auto a = split_message(astral, 100);
  ASSERT_FALSE(a.ok());
  const std::string xs = R"({"data":")" + std::string(200, 'x') + R"("})";
  auto b = split_message(xs, 100);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().message, "max_bytes too small to contain chunk metadata");
  const std::size_t overhead = chunk_overhead_bytes(kId, xs.size(), xs.size());
  auto c = split_message(xs, overhead + 11, kId);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, "max_bytes too small to encode payload characters");
  EXPECT_TRUE(split_message(xs, overhead + 12, kId).ok());
}

TEST(Chunking, Spec2_4_BoundarySweep1To999At300) {
  for (int n = 1; n < 1000; ++n) {
    const std::string payload =
        R"({"data":")" + std::string(static_cast<std::size_t>(n), 'a') + R"("})";
    const auto chunks = split_ok(payload, 300);
    if (payload.size() <= 300) {
      ASSERT_EQ(chunks, std::vector<std::string>{payload});
      continue;
    }
    ASSERT_EQ(check_and_join(chunks, 300), payload) << n;
  }
}

TEST(Chunking, Spec2_4_OverheadGrowsWithIndexDigits) {
  EXPECT_GT(chunk_overhead_bytes(kId, 10, 10), chunk_overhead_bytes(kId, 9, 9));
  EXPECT_EQ(chunk_overhead_bytes(kId, 9, 9),
            std::string(R"({"__dispatcherd_chunk__":"v1","message_id":")").size() + 32 +
                std::string(R"(","index":9,"total":9,"payload":""})").size());
}

TEST(Chunking, Spec2_4_InvalidUtf8IsSentAsReplacementCharacter) {
  const std::string payload = R"({"data":")" + repeat("ab\xff", 100) + R"("})";
  const auto chunks = split_ok(payload, 160);
  const std::string joined = check_and_join(chunks, 160);
  EXPECT_EQ(joined, R"({"data":")" + repeat("ab\xEF\xBF\xBD", 100) + R"("})");
}

// ---- ChunkAccumulator ---------------------------------------------------------------------

TEST(ChunkAccumulator, Spec2_4_NonChunkPassesThrough) {
  ChunkAccumulator acc;
  const auto r = acc.ingest(json{{"data", "plain"}}, 0);
  EXPECT_EQ(r.outcome, Outcome::NotChunk);
  EXPECT_EQ(acc.stats().total_chunks_received, 0u);
  EXPECT_EQ(acc.stats().errored_assemblies, 0u);
}

TEST(ChunkAccumulator, Spec2_4_AssemblesInOrder) {
  const json payload = {{"data", std::string(200, 'x')}};
  const auto chunks = chunk_objects(dump_python(payload), 200);
  ASSERT_GT(chunks.size(), 1u);
  ChunkAccumulator acc;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const auto r = acc.ingest(chunks[i], 1.0);
    if (i + 1 < chunks.size()) {
      EXPECT_EQ(r.outcome, Outcome::Incomplete);
    } else {
      ASSERT_EQ(r.outcome, Outcome::Complete);
      EXPECT_EQ(r.message, payload);
    }
  }
  EXPECT_EQ(acc.stats().total_chunks_received, chunks.size());
  EXPECT_EQ(acc.stats().successful_assemblies, 1u);
  EXPECT_EQ(acc.stats().errored_assemblies, 0u);
  // State is cleared after completion.
  EXPECT_EQ(acc.active_messages(), 0u);
  EXPECT_EQ(acc.held_bytes(), 0u);
}

TEST(ChunkAccumulator, Spec2_4_AssemblesOutOfOrder) {
  const json payload = {{"data", std::string(500, 'z')}};
  const auto chunks = chunk_objects(dump_python(payload), 220);
  ASSERT_GE(chunks.size(), 3u);
  std::vector<std::size_t> order = {1, chunks.size() - 1};
  for (std::size_t i = 2; i + 1 < chunks.size(); ++i) order.push_back(i);
  order.push_back(0);
  ChunkAccumulator acc;
  ChunkAccumulator::Ingested last;
  for (std::size_t k = 0; k < order.size(); ++k) {
    last = acc.ingest(chunks[order[k]], 0);
    if (k + 1 < order.size()) {
      EXPECT_EQ(last.outcome, Outcome::Incomplete);
    }
  }
  ASSERT_EQ(last.outcome, Outcome::Complete);
  EXPECT_EQ(last.message, payload);
  EXPECT_EQ(acc.stats().successful_assemblies, 1u);
}

TEST(ChunkAccumulator, Spec2_4_MalformedMetadataIsAnError) {
  QuietLog quiet;
  auto base = chunk(kId, 0, 2, "{");
  std::vector<json> bad;
  for (const char* key : {"index", "total", "message_id"}) {
    json c = base;
    c.erase(key);
    bad.push_back(c);
  }
  for (const json& v : {json(1.0), json(true), json("0"), json(nullptr)}) {
    json c = base;
    c["index"] = v;
    bad.push_back(c);
  }
  json num_id = base;
  num_id["message_id"] = 5;
  bad.push_back(num_id);
  json obj_payload = base;
  obj_payload["payload"] = json::object();
  bad.push_back(obj_payload);
  ChunkAccumulator acc;
  for (const json& c : bad) {
    const auto r = acc.ingest(c, 0);
    EXPECT_EQ(r.outcome, Outcome::Error) << c.dump();
    EXPECT_NE(r.error.find("invalid metadata"), std::string::npos) << r.error;
  }
  EXPECT_EQ(acc.stats().total_chunks_received, bad.size());
  EXPECT_EQ(acc.stats().errored_assemblies, bad.size());
  EXPECT_EQ(acc.active_messages(), 0u);
}

TEST(ChunkAccumulator, Spec2_4_VersionMismatchIsAnError) {
  QuietLog quiet;
  ChunkAccumulator acc;
  for (const json& marker : {json("dispatcherd.v0"), json(1), json(nullptr)}) {
    json c = chunk(kId, 0, 2, "{");
    c["__dispatcherd_chunk__"] = marker;
    const auto r = acc.ingest(c, 0);
    EXPECT_EQ(r.outcome, Outcome::Error);
    EXPECT_NE(r.error.find("Unsupported chunk version"), std::string::npos);
  }
  EXPECT_EQ(acc.stats().total_chunks_received, 3u);
  EXPECT_EQ(acc.stats().errored_assemblies, 3u);
}

TEST(ChunkAccumulator, Spec2_4_NonObjectAssemblyIsAnError) {
  QuietLog quiet;
  json list = json::array();
  for (int i = 0; i < 200; ++i) list.push_back("invalid");
  const std::string raw = dump_python(list);
  const auto chunks = chunk_objects(raw, raw.size() / 2);
  ASSERT_GT(chunks.size(), 1u);
  ChunkAccumulator acc;
  ChunkAccumulator::Ingested last;
  for (const auto& c : chunks) last = acc.ingest(c, 0);
  EXPECT_EQ(last.outcome, Outcome::Error);
  EXPECT_NE(last.error.find("not a dict"), std::string::npos);
  EXPECT_EQ(acc.stats().errored_assemblies, 1u);
  EXPECT_EQ(acc.stats().successful_assemblies, 0u);
  EXPECT_EQ(acc.active_messages(), 0u);
}

TEST(ChunkAccumulator, Spec2_4_InvalidJsonAssemblyIsAnError) {
  QuietLog quiet;
  ChunkAccumulator acc;
  const auto r = acc.ingest(chunk(kId, 0, 1, R"({"bad":)"), 0);
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_NE(r.error.find("Failed to decode chunked message"), std::string::npos);
  EXPECT_NE(r.error.find(kId), std::string::npos);
  EXPECT_EQ(acc.stats().total_chunks_received, 1u);
  EXPECT_EQ(acc.stats().errored_assemblies, 1u);
}

TEST(ChunkAccumulator, Spec2_4_PayloadDefaultsToEmpty) {
  ChunkAccumulator acc;
  json first = chunk(kId, 0, 3, "{\"a\":");
  json empty = chunk(kId, 1, 3, "");
  empty.erase("payload");
  EXPECT_EQ(acc.ingest(first, 0).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(empty, 0).outcome, Outcome::Incomplete);
  const auto r = acc.ingest(chunk(kId, 2, 3, "1}"), 0);
  ASSERT_EQ(r.outcome, Outcome::Complete);
  EXPECT_EQ(r.message, (json{{"a", 1}}));
}

TEST(ChunkAccumulator, Spec2_4_RepeatedIndexOverwrites) {
  ChunkAccumulator acc;
  EXPECT_EQ(acc.ingest(chunk(kId, 0, 2, "{\"a\":9999"), 0).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk(kId, 0, 2, "{\"a\":"), 0).outcome, Outcome::Incomplete);
  const auto r = acc.ingest(chunk(kId, 1, 2, "1}"), 0);
  ASSERT_EQ(r.outcome, Outcome::Complete);
  EXPECT_EQ(r.message, (json{{"a", 1}}));
  EXPECT_EQ(acc.held_bytes(), 0u);
}

TEST(ChunkAccumulator, Spec2_4_TotalFromLatestChunkWins) {
  QuietLog quiet;
  ChunkAccumulator acc;
  EXPECT_EQ(acc.ingest(chunk(kId, 0, 3, "{\"a\":"), 0).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk(kId, 2, 3, "junk"), 0).outcome, Outcome::Incomplete);
  // total shrinks to 2: index 2 can no longer be used, and 0..1 completes the message.
  const auto r = acc.ingest(chunk(kId, 1, 2, "1}"), 0);
  ASSERT_EQ(r.outcome, Outcome::Complete);
  EXPECT_EQ(r.message, (json{{"a", 1}}));
  EXPECT_EQ(acc.active_messages(), 0u);
  EXPECT_EQ(acc.held_bytes(), 0u);
}

TEST(ChunkAccumulator, IndexOrTotalOutOfRangeIsAnErrorAndNotStored) {
  QuietLog quiet;
  ChunkAccumulator acc;
  for (const json& c : {chunk(kId, 2, 2, "x"), chunk(kId, -1, 2, "x"), chunk(kId, 0, 0, "x"),
                        chunk(kId, 0, -3, "x"), chunk(kId, 0, 100001, "x")}) {
    EXPECT_EQ(acc.ingest(c, 0).outcome, Outcome::Error) << c.dump();
  }
  json huge = chunk(kId, 0, 2, "x");
  huge["index"] = std::numeric_limits<std::uint64_t>::max();
  EXPECT_EQ(acc.ingest(huge, 0).outcome, Outcome::Error);
  EXPECT_EQ(acc.stats().errored_assemblies, 6u);
  EXPECT_EQ(acc.active_messages(), 0u);
  EXPECT_EQ(acc.held_bytes(), 0u);
}

TEST(ChunkAccumulator, Spec2_4_ExpiresOldMessages) {
  QuietLog quiet;
  ChunkAccumulator acc(ChunkAccumulator::Limits{.timeout_seconds = 5});
  const auto chunks = chunk_objects(dump_python(json{{"data", repeat("expire_me", 60)}}), 300);
  ASSERT_GT(chunks.size(), 1u);
  EXPECT_EQ(acc.ingest(chunks[0], 100.0).outcome, Outcome::Incomplete);
  EXPECT_TRUE(acc.expire(104.9).empty());
  EXPECT_EQ(acc.active_messages(), 1u);
  const auto expired = acc.expire(105.0);  // age >= timeout
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0], chunks[0]["message_id"]);
  EXPECT_EQ(acc.active_messages(), 0u);
  EXPECT_EQ(acc.held_bytes(), 0u);
  EXPECT_EQ(acc.stats().total_chunks_received, 1u);
  EXPECT_EQ(acc.stats().timed_out_assemblies, 1u);
  // The late remaining chunks start a new partial and never complete the message.
  for (std::size_t i = 1; i < chunks.size(); ++i) {
    EXPECT_EQ(acc.ingest(chunks[i], 106.0).outcome, Outcome::Incomplete);
  }
  EXPECT_EQ(acc.stats().successful_assemblies, 0u);
}

TEST(ChunkAccumulator, Spec2_4_TimeoutZeroDisablesExpiry) {
  ChunkAccumulator acc(ChunkAccumulator::Limits{.timeout_seconds = 0});
  EXPECT_EQ(acc.ingest(chunk(kId, 0, 2, "{"), 0).outcome, Outcome::Incomplete);
  EXPECT_TRUE(acc.expire(1e9).empty());
  EXPECT_EQ(acc.active_messages(), 1u);
}

TEST(ChunkAccumulator, Spec4_4_SnapshotShape) {
  ChunkAccumulator acc;
  EXPECT_EQ(acc.ingest(chunk(kId, 2, 4,
                             "\xc3\xa9\xf0\x9f\x98\x8a"
                             "ab"),
                       10.0)
                .outcome,
            Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk(kId, 0, 4, "{\"a\":"), 11.0).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(json{{"task", "x"}}, 11.0).outcome, Outcome::NotChunk);
  const json expected = json::parse(R"({
    "status": {"total_chunks_received": 2, "successful_assemblies": 0, "errored_assemblies": 0,
               "timed_out_assemblies": 0, "active_messages": 1},
    "partials": {"0123456789abcdef0123456789abcdef": {
      "seconds_since_start": 2.5, "expected_total": 4,
      "chunks": [{"chunk_id": 0, "length": 5}, {"chunk_id": 2, "length": 4}]}}})");
  EXPECT_EQ(acc.snapshot(12.5), expected);
  EXPECT_TRUE(acc.snapshot(12.5)["partials"][kId]["seconds_since_start"].is_number_float());
}

// ---- bounds -------------------------------------------------------------------------------

TEST(ChunkAccumulator, MaxMessagesDropsTheOldestPartial) {
  QuietLog quiet;
  ChunkAccumulator acc(ChunkAccumulator::Limits{.max_messages = 2});
  EXPECT_EQ(acc.ingest(chunk("m1", 0, 2, "{"), 1).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("m2", 0, 2, "{"), 2).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("m1", 1, 3, "\"a\":"), 3).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("m3", 0, 2, "{"), 4).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.active_messages(), 2u);
  EXPECT_EQ(acc.stats().overflow_drops, 1u);
  EXPECT_EQ(acc.stats().errored_assemblies, 0u);
  const json partials = acc.snapshot(5)["partials"];
  EXPECT_FALSE(partials.contains("m1"));  // oldest by first arrival, even if touched later
  EXPECT_TRUE(partials.contains("m2"));
  EXPECT_TRUE(partials.contains("m3"));
}

TEST(ChunkAccumulator, MaxBytesDropsOldestThenItself) {
  QuietLog quiet;
  ChunkAccumulator acc(ChunkAccumulator::Limits{.max_bytes = 2000});
  EXPECT_EQ(acc.ingest(chunk("m1", 0, 2, std::string(800, 'a')), 1).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("m2", 0, 2, std::string(800, 'b')), 2).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("m2", 1, 3, std::string(600, 'c')), 3).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.active_messages(), 1u);  // m1 made room
  EXPECT_LE(acc.held_bytes(), 2000u);
  const auto r = acc.ingest(chunk("m2", 2, 3, std::string(700, 'd')), 4);
  EXPECT_EQ(r.outcome, Outcome::Error);  // nothing else to drop: m2 itself goes
  EXPECT_EQ(acc.active_messages(), 0u);
  EXPECT_EQ(acc.held_bytes(), 0u);
  EXPECT_EQ(acc.stats().overflow_drops, 2u);
}

TEST(ChunkAccumulator, MaxMessageBytesDropsThatMessage) {
  QuietLog quiet;
  ChunkAccumulator acc(ChunkAccumulator::Limits{.max_message_bytes = 1000});
  EXPECT_EQ(acc.ingest(chunk("keep", 0, 2, "{"), 0).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("big", 0, 3, std::string(600, 'a')), 0).outcome, Outcome::Incomplete);
  EXPECT_EQ(acc.ingest(chunk("big", 1, 3, std::string(600, 'a')), 0).outcome, Outcome::Error);
  EXPECT_EQ(acc.ingest(chunk("huge", 0, 3, std::string(1001, 'a')), 0).outcome, Outcome::Error);
  EXPECT_EQ(acc.active_messages(), 1u);
  EXPECT_EQ(acc.stats().overflow_drops, 2u);
  EXPECT_EQ(acc.stats().errored_assemblies, 0u);
}

TEST(ChunkAccumulator, FloodOfRandomChunksStaysWithinBounds) {
  QuietLog quiet;
  const ChunkAccumulator::Limits limits{.max_messages = 100, .max_bytes = 1 << 20};
  ChunkAccumulator acc(limits);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const std::string id = std::to_string(rng() % 5000);
    const auto total = static_cast<std::int64_t>(1 + rng() % 100000);
    (void)acc.ingest(chunk(id, static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(total)),
                           total, std::string(rng() % 4000, 'x')),
                     i * 0.001);
    ASSERT_LE(acc.active_messages(), limits.max_messages);
    ASSERT_LE(acc.held_bytes(), limits.max_bytes);
  }
  EXPECT_EQ(acc.stats().total_chunks_received, 100000u);
  EXPECT_GT(acc.stats().overflow_drops, 0u);
}

// ---- round trip ---------------------------------------------------------------------------

std::string random_text(std::mt19937_64& rng, std::size_t n) {
  static const char* pieces[] = {"a",
                                 "Z",
                                 " ",
                                 "\"",
                                 "\\",
                                 "\n",
                                 "\t",
                                 "\x01",
                                 "\x1f",
                                 "\x7f",
                                 "\xc3\xa9",
                                 "\xe6\xbc\xa2",
                                 "\xef\xbf\xbf",
                                 "\xf0\x9f\x98\x8a",
                                 "\xf4\x8f\xbf\xbf",
                                 "/",
                                 "\\u0041",
                                 "{",
                                 "]"};
  std::string s;
  while (s.size() < n) s += pieces[rng() % std::size(pieces)];
  return s;
}

TEST(ChunkAccumulator, Spec2_4_RandomPayloadsRoundTripInShuffledOrder) {
  std::mt19937_64 rng(20240601);
  ChunkAccumulator acc;
  for (int round = 0; round < 100; ++round) {
    // Mostly a few KB; every tenth message is large enough for several 7999-byte pieces.
    const std::size_t len = round % 10 == 0 ? 20000 + rng() % 10000 : rng() % 3000;
    json message = {{"task", "tests.data.methods.echo"},
                    {"uuid", uuid4()},
                    {"args", {random_text(rng, len), static_cast<int>(rng() % 1000)}},
                    {"kwargs", {{random_text(rng, 5), random_text(rng, rng() % 1000)}}}};
    const std::string text = round % 2 ? dump_python(message) : dump_compact(message);
    for (std::size_t max_bytes :
         {kPgNotifyMaxBytes, kSocketMaxBytes, std::size_t{300}, std::size_t{140}}) {
      if (max_bytes < 1000 && text.size() > 10000) continue;  // thousands of pieces: slow
      auto chunks = split_ok(text, max_bytes);
      ASSERT_FALSE(chunks.empty());
      if (chunks.size() == 1 && chunks[0] == text) continue;  // small enough to pass as is
      std::shuffle(chunks.begin(), chunks.end(), rng);
      ChunkAccumulator::Ingested last;
      for (std::size_t i = 0; i < chunks.size(); ++i) {
        ASSERT_LE(chunks[i].size(), max_bytes);
        auto decoded = decode_payload(chunks[i]);  // the service's full path
        ASSERT_TRUE(decoded.ok());
        last = acc.ingest(*decoded, round);
        if (i + 1 < chunks.size()) {
          ASSERT_EQ(last.outcome, Outcome::Incomplete);
        }
      }
      ASSERT_EQ(last.outcome, Outcome::Complete) << last.error;
      EXPECT_EQ(last.message, message);
      EXPECT_EQ(round % 2 ? dump_python(last.message) : dump_compact(last.message), text);
    }
  }
  EXPECT_EQ(acc.active_messages(), 0u);
  EXPECT_EQ(acc.held_bytes(), 0u);
  EXPECT_EQ(acc.stats().errored_assemblies, 0u);
}

}  // namespace
}  // namespace dispatcherd
