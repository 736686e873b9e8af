// Publisher against the real test Postgres: a plain libpq connection LISTENs on a fresh
// channel and the notifications are checked field by field; chunked messages reassemble with
// ChunkAccumulator; batches keep their transaction semantics (a SingleTransaction batch that
// fails mid-way delivers nothing, a TransactionPerMessage one loses only the bad message).
//
// "Nothing was delivered" is proved without sleeping: a marker message is published after the
// batch on the same session, and Postgres delivers a listener's notifications in commit
// order, so anything the batch delivered would arrive before the marker.

#include "dispatcherd/publish.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dispatcherd/channel_name.h"
#include "dispatcherd/chunking.h"
#include "pg_test_env.h"

namespace dispatcherd {
namespace {

using nlohmann::json;
using testing::pg_dsn;
using testing::pg_exec;
using testing::unique_channel;

// A plain libpq LISTEN connection: what any other client of the channel would see.
class Listener {
 public:
  explicit Listener(const std::string& channel) : conn_(PQconnectdb(pg_dsn().c_str()), &PQfinish) {
    EXPECT_EQ(PQstatus(conn_.get()), CONNECTION_OK) << PQerrorMessage(conn_.get());
    const std::string sql = "LISTEN " + quote_identifier(channel);
    PGresult* r = PQexec(conn_.get(), sql.c_str());
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(conn_.get());
    PQclear(r);
  }

  // Payloads received until `n` are in or `timeout` seconds pass (returns what came).
  std::vector<std::string> collect(std::size_t n, double timeout = 20) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    for (;;) {
      while (PGnotify* note = PQnotifies(conn_.get())) {
        got_.emplace_back(note->extra);
        PQfreemem(note);
      }
      if (got_.size() >= n || std::chrono::steady_clock::now() >= deadline) break;
      pollfd pfd{PQsocket(conn_.get()), POLLIN, 0};
      ::poll(&pfd, 1, 50);
      if (PQconsumeInput(conn_.get()) == 0) {
        ADD_FAILURE() << "listener lost: " << PQerrorMessage(conn_.get());
        break;
      }
    }
    return got_;
  }

  // Everything received before the marker payload `marker` (which must arrive).
  std::vector<std::string> until_marker(const std::string& marker) {
    for (std::size_t n = got_.size() + 1;; ++n) {
      auto all = collect(n);
      if (all.size() < n) {
        ADD_FAILURE() << "marker never arrived";
        return all;
      }
      if (json::parse(all.back()).value("uuid", "") == marker) {
        all.pop_back();
        return all;
      }
    }
  }

 private:
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn_;
  std::vector<std::string> got_;
};

PublisherOptions options_for(const std::string& channel) {
  PublisherOptions o;
  o.conninfo = pg_dsn();
  o.default_channel = channel;
  return o;
}

Publisher connect_or_die(PublisherOptions o) {
  auto p = Publisher::connect(std::move(o));
  if (!p.ok()) throw std::runtime_error(p.error().message);
  return std::move(p).value();
}

TaskMessage simple(const std::string& uuid) {
  TaskMessage m;
  m.task = "dispatcherd.builtin.noop";
  m.uuid = uuid;
  return m;
}

TEST(Publisher, Spec11_1_BodyFieldByField) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_fields");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  TaskMessage m;
  m.task = "dispatcherd.builtin.echo";
  m.uuid = "fields-1";
  m.args = {1, "two", nullptr};
  m.kwargs = {{"k", "v\u00e9"}, {"n", 2.5}};
  m.timeout = 5;
  m.delay = 0.25;
  m.on_duplicate = OnDuplicate::QueueOne;
  m.bind = true;
  m.time_pub = 1727354869.5;
  m.extra = {{"guid", "g-1"}};
  auto sent = pub.publish(m);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  EXPECT_EQ(sent->uuid, "fields-1");
  EXPECT_EQ(sent->channel, ch);
  EXPECT_EQ(sent->pieces, 1u);

  auto got = listener.collect(1);
  ASSERT_EQ(got.size(), 1u);
  // Python json.dumps text in upstream's key order, ASCII-only.
  EXPECT_EQ(got[0],
            R"({"task": "dispatcherd.builtin.echo", "time_pub": 1727354869.5, "uuid": "fields-1", )"
            R"("args": [1, "two", null], "kwargs": {"k": "v\u00e9", "n": 2.5}, "bind": true, )"
            R"("timeout": 5.0, "delay": 0.25, "on_duplicate": "queue_one", "guid": "g-1"})");
  const json body = json::parse(got[0]);
  EXPECT_EQ(body["task"], "dispatcherd.builtin.echo");
  EXPECT_EQ(body["uuid"], "fields-1");
  EXPECT_EQ(body["args"], json({1, "two", nullptr}));
  EXPECT_EQ(body["kwargs"]["k"], "v\u00e9");
  EXPECT_EQ(body["timeout"], 5.0);
  EXPECT_EQ(body["delay"], 0.25);
  EXPECT_EQ(body["on_duplicate"], "queue_one");
  EXPECT_EQ(body["bind"], true);
  EXPECT_EQ(body["guid"], "g-1");
}

TEST(Publisher, Spec11_1_DefaultsUuid4NowAndOmitsEmptyFields) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_defaults");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  TaskMessage m;
  m.task = "t";
  m.args = json::array();
  m.kwargs = json::object();
  const double before =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto sent = pub.publish(m);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  auto got = listener.collect(1);
  ASSERT_EQ(got.size(), 1u);
  const json body = json::parse(got[0]);
  EXPECT_EQ(body.size(), 3u) << got[0];  // task, time_pub, uuid only
  const std::string uuid = body["uuid"];
  EXPECT_EQ(uuid, sent->uuid);
  ASSERT_EQ(uuid.size(), 36u);
  EXPECT_EQ(uuid[14], '4');  // version nibble of a uuid4
  EXPECT_GE(body["time_pub"].get<double>(), before - 1);
  EXPECT_LE(body["time_pub"].get<double>(), before + 60);
}

TEST(Publisher, Spec3_1_3_QueueOverridesDefaultChannel) {
  REQUIRE_PG();
  const std::string a = unique_channel("pub_a"), b = unique_channel("pub_b");
  Listener on_b(b);
  Publisher pub = connect_or_die(options_for(a));
  TaskMessage m = simple("to-b");
  m.queue = b;
  auto sent = pub.publish(m);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  EXPECT_EQ(sent->channel, b);
  auto got = on_b.collect(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(json::parse(got[0])["uuid"], "to-b");
}

TEST(Publisher, Spec2_4_ChunksAbove7999Bytes) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_chunks");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  TaskMessage m = simple("big-1");
  // 100 kB with characters that cost more than one byte once escaped, so pieces are cut at
  // escape and UTF-8 boundaries too.
  std::string big;
  while (big.size() < 100 * 1024) big += "abc\"\\\n\u00e9\U0001F525 ";
  m.kwargs = {{"blob", big}};
  auto sent = pub.publish(m);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  ASSERT_GT(sent->pieces, 13u);

  auto got = listener.collect(sent->pieces);
  ASSERT_EQ(got.size(), sent->pieces);
  ChunkAccumulator acc;
  json assembled;
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_LE(got[i].size(), kPgNotifyMaxBytes);
    const json piece = json::parse(got[i]);
    EXPECT_EQ(piece["__dispatcherd_chunk__"], "v1");
    EXPECT_EQ(piece["index"], i);  // in order: one transaction, one session
    auto r = acc.ingest(piece, 0);
    if (i + 1 < got.size()) {
      EXPECT_EQ(r.outcome, ChunkAccumulator::Outcome::Incomplete) << r.error;
    } else {
      ASSERT_EQ(r.outcome, ChunkAccumulator::Outcome::Complete) << r.error;
      assembled = r.message;
    }
  }
  EXPECT_EQ(assembled["uuid"], "big-1");
  EXPECT_EQ(assembled["kwargs"]["blob"], big);
}

TEST(Publisher, BatchPerMessageDeliversEveryMessageOnce) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_batch");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  std::vector<TaskMessage> batch;
  // Above the pipeline's in-flight cap (1000), so sending and reading interleave.
  for (int i = 0; i < 2500; ++i) batch.push_back(simple("b-" + std::to_string(i)));
  auto report = pub.publish_batch(batch, BatchMode::TransactionPerMessage);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(report->ok());
  ASSERT_EQ(report->published.size(), 2500u);
  EXPECT_EQ(report->published[7].uuid, "b-7");

  auto got = listener.collect(2500);
  ASSERT_EQ(got.size(), 2500u);
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(json::parse(got[i])["uuid"], "b-" + std::to_string(i));  // commit order
}

TEST(Publisher, BatchSingleTransactionDeliversAllAtCommit) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_txn");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  std::vector<TaskMessage> batch;
  for (int i = 0; i < 3000; ++i) batch.push_back(simple("t-" + std::to_string(i)));
  batch[1500].kwargs = {{"blob", std::string(30000, 'x')}};  // chunked inside the transaction
  auto report = pub.publish_batch(batch, BatchMode::SingleTransaction);
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->published.size(), 3000u);
  const std::size_t pieces = report->published[1500].pieces;
  EXPECT_GT(pieces, 1u);
  auto got = listener.collect(2999 + pieces);
  ASSERT_EQ(got.size(), 2999 + pieces);
  std::set<std::string> uuids;
  for (const std::string& p : got) {
    const json m = json::parse(p);
    if (m.contains("uuid")) uuids.insert(m["uuid"].get<std::string>());
  }
  EXPECT_EQ(uuids.size(), 2999u);  // the chunked one has its uuid inside the pieces
}

// A message that passes every client-side check but that Postgres refuses: 9000 bytes with
// the chunking threshold raised above the server's limit.
std::vector<TaskMessage> batch_with_refused_middle(std::size_t* refused_index) {
  std::vector<TaskMessage> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(simple("m-" + std::to_string(i)));
  batch[5].kwargs = {{"blob", std::string(9000, 'x')}};
  *refused_index = 5;
  return batch;
}

TEST(Publisher, BatchSingleTransactionFailingMidwayDeliversNothing) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_txn_fail");
  Listener listener(ch);
  PublisherOptions o = options_for(ch);
  o.max_payload_bytes = 100000;
  Publisher pub = connect_or_die(o);
  std::size_t bad = 0;
  auto report = pub.publish_batch(batch_with_refused_middle(&bad), BatchMode::SingleTransaction);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.error().message.find("payload string too long"), std::string::npos)
      << report.error().message;
  EXPECT_NE(report.error().message.find("not delivered"), std::string::npos);

  // The session is still usable, and nothing of the batch was delivered before the marker.
  ASSERT_TRUE(pub.publish(simple("marker")).ok());
  EXPECT_EQ(listener.until_marker("marker"), std::vector<std::string>{});
}

TEST(Publisher, BatchPerMessageFailingMidwayLosesOnlyThatMessage) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_pm_fail");
  Listener listener(ch);
  PublisherOptions o = options_for(ch);
  o.max_payload_bytes = 100000;
  Publisher pub = connect_or_die(o);
  std::size_t bad = 0;
  auto report =
      pub.publish_batch(batch_with_refused_middle(&bad), BatchMode::TransactionPerMessage);
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->failures.size(), 1u);
  EXPECT_EQ(report->failures[0].index, bad);
  EXPECT_EQ(report->failures[0].uuid, "m-5");
  EXPECT_NE(report->failures[0].error.find("payload string too long"), std::string::npos);
  EXPECT_EQ(report->published.size(), 9u);

  ASSERT_TRUE(pub.publish(simple("marker")).ok());
  std::vector<std::string> uuids;
  for (const std::string& p : listener.until_marker("marker"))
    uuids.push_back(json::parse(p)["uuid"]);
  EXPECT_EQ(uuids, (std::vector<std::string>{"m-0", "m-1", "m-2", "m-3", "m-4", "m-6", "m-7", "m-8",
                                             "m-9"}));
}

TEST(Publisher, InvalidMessageFailsTheBatchBeforeSending) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_invalid");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  std::vector<TaskMessage> batch{simple("ok-0"), simple("bad-1")};
  batch[1].args = {{"not", "an array"}};
  auto report = pub.publish_batch(batch);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().message,
            "message 1 (task 'dispatcherd.builtin.noop'): field 'args' must be an array");

  TaskMessage no_task;
  EXPECT_FALSE(pub.publish(no_task).ok());
  TaskMessage clash = simple("x");
  clash.extra = {{"uuid", "other"}};
  EXPECT_FALSE(pub.publish(clash).ok());
  TaskMessage long_channel = simple("x");
  long_channel.queue = std::string(64, 'c');
  EXPECT_FALSE(pub.publish(long_channel).ok());

  ASSERT_TRUE(pub.publish(simple("marker")).ok());
  EXPECT_EQ(listener.until_marker("marker"), std::vector<std::string>{});
}

TEST(Publisher, NoChannelIsAnError) {
  REQUIRE_PG();
  Publisher pub = connect_or_die(options_for(""));
  auto sent = pub.publish(simple("x"));
  ASSERT_FALSE(sent.ok());
  EXPECT_NE(sent.error().message.find("no channel"), std::string::npos) << sent.error().message;
}

TEST(Publisher, ConnectFailureIsAResultNotAnException) {
  PublisherOptions o;
  o.conninfo = "host=127.0.0.1 port=1 dbname=x connect_timeout=2";
  auto p = Publisher::connect(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message.rfind("cannot connect to Postgres: ", 0), 0u) << p.error().message;
  EXPECT_EQ(p.error().message.find('\n'), std::string::npos);
}

TEST(Publisher, ReconnectsAfterItsSessionIsKilled) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_reconnect");
  const std::string app = "pub_reconnect_" + std::to_string(::getpid());
  Listener listener(ch);
  PublisherOptions o = options_for(ch);
  o.conninfo += " application_name=" + app;
  Publisher pub = connect_or_die(o);
  ASSERT_TRUE(pub.publish(simple("before")).ok());
  ASSERT_NE(pg_exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                    "application_name = '" +
                    app + "'"),
            "0");
  // The first call after the kill may find the dead session (an Error, never a throw); the
  // next one reconnects.
  auto first = pub.publish(simple("maybe"));
  if (!first.ok()) {
    EXPECT_NE(first.error().message.find("failed"), std::string::npos) << first.error().message;
  }
  auto second = pub.publish(simple("after"));
  ASSERT_TRUE(second.ok()) << second.error().message;
  std::vector<std::string> uuids;
  for (const std::string& p : listener.until_marker("after"))
    uuids.push_back(json::parse(p)["uuid"]);
  EXPECT_EQ(uuids.front(), "before");
}

TEST(Publisher, PublishPayloadSendsRawTextChunked) {
  REQUIRE_PG();
  const std::string ch = unique_channel("pub_raw");
  Listener listener(ch);
  Publisher pub = connect_or_die(options_for(ch));
  auto n = pub.publish_payload(ch, R"({"control": "alive"})");
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 1u);
  auto got = listener.collect(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], R"({"control": "alive"})");
  EXPECT_FALSE(pub.publish_payload(ch, std::string("a\0b", 3)).ok());
}

}  // namespace
}  // namespace dispatcherd
