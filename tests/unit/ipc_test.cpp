// The main ⇄ worker frame format (dispatcherd/pool/ipc.h).
#include "dispatcherd/pool/ipc.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace dispatcherd::ipc {
namespace {

std::string three_frames() {
  std::string s;
  append_frame(s, FrameType::kTask, 7, encode_task({"u-1", "chan", R"({"task":"x"})"}));
  append_frame(s, FrameType::kStop, 8, "");
  append_frame(s, FrameType::kControlReply, 9, R"({"ok":true})");
  return s;
}

void expect_three(const std::vector<Frame>& got) {
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, FrameType::kTask);
  EXPECT_EQ(got[0].seq, 7u);
  EXPECT_EQ(got[1].type, FrameType::kStop);
  EXPECT_EQ(got[1].seq, 8u);
  EXPECT_TRUE(got[1].payload.empty());
  EXPECT_EQ(got[2].type, FrameType::kControlReply);
  EXPECT_EQ(got[2].seq, 9u);
  EXPECT_EQ(got[2].payload, R"({"ok":true})");
}

TEST(Ipc, FramesSplitAtEveryByteBoundaryReassemble) {
  const std::string stream = three_frames();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    FrameReader r;
    std::vector<Frame> got;
    r.feed(stream.data(), cut);
    while (auto f = r.next()) got.push_back(std::move(*f));
    r.feed(stream.data() + cut, stream.size() - cut);
    while (auto f = r.next()) got.push_back(std::move(*f));
    SCOPED_TRACE(cut);
    expect_three(got);
    EXPECT_FALSE(r.corrupt());
    EXPECT_EQ(r.buffered(), 0u);
  }
}

TEST(Ipc, FramesFedOneByteAtATimeReassemble) {
  const std::string stream = three_frames();
  FrameReader r;
  std::vector<Frame> got;
  for (char c : stream) {
    r.feed(&c, 1);
    while (auto f = r.next()) got.push_back(std::move(*f));
  }
  expect_three(got);
}

TEST(Ipc, OneMegabytePayloadRoundTrips) {
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  std::string stream;
  append_frame(stream, FrameType::kDone, 42, big);
  FrameReader r;
  // Arrives in pipe-sized pieces, as a worker's read() would see it.
  for (std::size_t off = 0; off < stream.size(); off += 65536) {
    EXPECT_FALSE(r.next().has_value());
    r.feed(stream.data() + off, std::min<std::size_t>(65536, stream.size() - off));
  }
  auto f = r.next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, FrameType::kDone);
  EXPECT_EQ(f->seq, 42u);
  EXPECT_EQ(f->payload, big);
  EXPECT_FALSE(r.next().has_value());
}

TEST(Ipc, UnknownFrameTypeIsCorruptForever) {
  std::string stream;
  append_frame(stream, FrameType::kStop, 1, "");
  stream[4] = 99;  // the type field
  FrameReader r;
  r.feed(stream.data(), stream.size());
  EXPECT_FALSE(r.next().has_value());
  EXPECT_TRUE(r.corrupt());
  std::string good;
  append_frame(good, FrameType::kStop, 2, "");
  r.feed(good.data(), good.size());
  EXPECT_FALSE(r.next().has_value());
  EXPECT_TRUE(r.corrupt());
}

TEST(Ipc, OversizedLengthIsCorrupt) {
  std::string stream;
  append_frame(stream, FrameType::kStop, 1, "");
  const std::uint32_t len = kMaxPayloadBytes + 1;
  std::memcpy(stream.data(), &len, sizeof len);
  FrameReader r;
  r.feed(stream.data(), stream.size());
  EXPECT_FALSE(r.next().has_value());
  EXPECT_TRUE(r.corrupt());
}

TEST(Ipc, IncompleteHeaderIsNotCorrupt) {
  std::string stream;
  append_frame(stream, FrameType::kStop, 1, "");
  FrameReader r;
  r.feed(stream.data(), kHeaderBytes - 1);
  EXPECT_FALSE(r.next().has_value());
  EXPECT_FALSE(r.corrupt());
  EXPECT_EQ(r.buffered(), kHeaderBytes - 1);
}

TEST(Ipc, TaskPayloadRoundTrips) {
  const std::string body = R"({"task":"dispatcherd.builtin.noop","args":[1,"ü"]})";
  std::string enc = encode_task({"uuid-1", "", body, 98765.125});
  auto t = decode_task(enc);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->uuid, "uuid-1");
  EXPECT_EQ(t->channel, "");
  EXPECT_EQ(t->body, body);
  EXPECT_EQ(t->received_at, 98765.125);
}

TEST(Ipc, TaskFrameIsTheFrameOfTheEncodedTask) {
  const std::string body = R"({"task":"dispatcherd.builtin.noop"})";
  std::string direct = "prefix";
  append_task_frame(direct, 42, {"uuid-1", "chan", body, 7.5});
  std::string composed = "prefix";
  append_frame(composed, FrameType::kTask, 42, encode_task({"uuid-1", "chan", body, 7.5}));
  EXPECT_EQ(direct, composed);
}

TEST(Ipc, TruncatedOrPaddedTaskPayloadIsRejected) {
  std::string enc = encode_task({"uuid-1", "ch", "{}"});
  for (std::size_t n = 0; n < enc.size(); ++n)
    EXPECT_FALSE(decode_task(std::string_view(enc).substr(0, n)).has_value()) << n;
  EXPECT_FALSE(decode_task(enc + "x").has_value());
}

TEST(Ipc, DonePayloadRoundTrips) {
  DonePayload d;
  d.status = TaskStatus::kCancelled;
  d.is_stopping = true;
  d.time_started = 1727354869.51;
  d.time_finish = 1727354870.25;
  d.result = R"("<cancel>")";
  d.error = "task canceled";
  auto got = decode_done(encode_done(d));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, TaskStatus::kCancelled);
  EXPECT_TRUE(got->is_stopping);
  EXPECT_DOUBLE_EQ(got->time_started, d.time_started);
  EXPECT_DOUBLE_EQ(got->time_finish, d.time_finish);
  EXPECT_EQ(got->result, d.result);
  EXPECT_EQ(got->error, d.error);
}

TEST(Ipc, TruncatedDonePayloadIsRejected) {
  DonePayload d;
  d.result = "null";
  std::string enc = encode_done(d);
  for (std::size_t n = 0; n < enc.size(); ++n)
    EXPECT_FALSE(decode_done(std::string_view(enc).substr(0, n)).has_value()) << n;
  EXPECT_FALSE(decode_done(enc + "x").has_value());
}

TEST(Ipc, DonePayloadWithUnknownStatusIsRejected) {
  std::string enc = encode_done(DonePayload{});
  enc[0] = 3;
  EXPECT_FALSE(decode_done(enc).has_value());
}

}  // namespace
}  // namespace dispatcherd::ipc
