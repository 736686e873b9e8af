// The pure parts of a dispatcherctl round trip (upstream-spec §4.1-§4.2, §3.1.3, §11.1):
// broker and channel choice, the request text, reply collection with chunk reassembly, the
// printed output, and the task messages of `submit`.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "app.h"
#include "dispatcherd/chunking.h"
#include "dispatcherd/config.h"
#include "request.h"
#include "submit.h"

namespace dispatcherctl {
namespace {

using dispatcherd::Config;
using nlohmann::json;

Config config(const std::string& brokers_and_publish) {
  auto r = dispatcherd::load_config_text("version: 2\n" + brokers_and_publish, "x.yml");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : Config{};
}

const char* kPg = "  pg_notify:\n    config: {conninfo: 'dbname=x'}\n    channels: [a, b]\n";
const char* kSocket = "  socket:\n    socket_path: /tmp/x.sock\n";

TEST(CtlBrokerChoice, OnlyBroker) {
  EXPECT_EQ(*choose_control_broker(config(std::string("brokers:\n") + kPg)), BrokerKind::PgNotify);
  EXPECT_EQ(*choose_control_broker(config(std::string("brokers:\n") + kSocket)),
            BrokerKind::Socket);
}

TEST(CtlBrokerChoice, ControlBrokerFirstThenDefaultBroker) {
  const std::string both = std::string("brokers:\n") + kPg + kSocket;
  EXPECT_EQ(*choose_control_broker(config(
                both + "publish: {default_control_broker: socket, default_broker: pg_notify}\n")),
            BrokerKind::Socket);
  EXPECT_EQ(*choose_control_broker(config(both + "publish: {default_broker: pg_notify}\n")),
            BrokerKind::PgNotify);
  // Publishing ignores default_control_broker.
  EXPECT_EQ(*choose_publish_broker(config(
                both + "publish: {default_control_broker: socket, default_broker: pg_notify}\n")),
            BrokerKind::PgNotify);
}

TEST(CtlBrokerChoice, Errors) {
  auto none = choose_control_broker(config(std::string("brokers:\n") + kPg + kSocket));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(
      none.error().message.find("Could not determine which broker to publish with between options "
                                "[pg_notify, socket]"),
      std::string::npos);
  EXPECT_FALSE(choose_control_broker(config("brokers: {}\n")).ok());
  auto missing = choose_control_broker(
      config(std::string("brokers:\n") + kPg + "publish: {default_control_broker: socket}\n"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("not configured"), std::string::npos);
  EXPECT_FALSE(choose_publish_broker(config(std::string("brokers:\n") + kSocket)).ok());
}

TEST(CtlChannelChoice, DefaultThenOnlyChannelNeverTheReplyChannel) {
  dispatcherd::PgNotifyConfig pg;
  pg.channels = {"a", "b"};
  auto none = choose_channel(pg);
  ASSERT_FALSE(none.ok());  // quirk #8: upstream would pick its own reply channel here
  EXPECT_NE(none.error().message.find("default_publish_channel"), std::string::npos);
  EXPECT_EQ(*choose_channel(pg, "explicit"), "explicit");
  pg.default_publish_channel = "b";
  EXPECT_EQ(*choose_channel(pg), "b");
  pg.default_publish_channel.reset();
  pg.channels = {"only"};
  EXPECT_EQ(*choose_channel(pg), "only");
  EXPECT_FALSE(choose_channel(pg, std::string(64, 'x')).ok());
}

TEST(CtlRequest, ShapeAndKeyOrder) {
  EXPECT_EQ(build_control_request("alive", "reply_to_x", json::object()),
            R"({"control": "alive", "reply_to": "reply_to_x"})");
  EXPECT_EQ(build_control_request("running", "r", json{{"uuid", "u\u00e9"}}),
            R"({"control": "running", "reply_to": "r", "control_data": {"uuid": "u\u00e9"}})");
  const std::string ch = new_reply_channel();
  EXPECT_EQ(ch.size(), 45u);
  EXPECT_EQ(ch.rfind("reply_to_", 0), 0u);
  EXPECT_EQ(ch.find('-'), std::string::npos);
  EXPECT_NE(ch, new_reply_channel());
}

TEST(CtlReplies, ObjectsErrorsAndNonObjects) {
  ReplyCollector c;
  EXPECT_TRUE(c.add(R"({"node_id": "n1"})", 0));
  EXPECT_TRUE(c.add("not json", 0));
  EXPECT_TRUE(c.add("[1, 2]", 0));
  ASSERT_EQ(c.replies().size(), 3u);
  EXPECT_EQ(c.replies()[0], (json{{"node_id", "n1"}}));
  EXPECT_EQ(c.replies()[1], (json{{"error", "JSON parse error"}, {"original", "not json"}}));
  EXPECT_EQ(c.replies()[2], (json{{"error", "JSON parse error"}, {"original", "[1, 2]"}}));
}

TEST(CtlReplies, ChunksCountOnlyWhenComplete) {
  json big = {{"node_id", "n"}, {"blob", std::string(3000, 'x')}};
  auto pieces = dispatcherd::split_message(big.dump(), 1024);
  ASSERT_TRUE(pieces.ok());
  ASSERT_GT(pieces->size(), 2u);
  ReplyCollector c;
  // Out of order, with another reply in between.
  for (std::size_t i = pieces->size(); i-- > 1;) EXPECT_FALSE(c.add((*pieces)[i], 0));
  EXPECT_TRUE(c.add(R"({"node_id": "other"})", 0));
  EXPECT_FALSE(c.satisfied(2));
  EXPECT_TRUE(c.add((*pieces)[0], 0));
  ASSERT_EQ(c.replies().size(), 2u);
  EXPECT_EQ(c.replies()[1], big);
  EXPECT_TRUE(c.satisfied(2));
  // A malformed chunk is dropped, not a reply.
  EXPECT_FALSE(c.add(R"({"__dispatcherd_chunk__": "v2", "message_id": "m"})", 0));
  EXPECT_EQ(c.chunk_errors(), 1u);
}

TEST(CtlReplies, Spec4_2_ReplyLargerThanTheServiceMessageBoundIsAssembled) {
  // `running` over a 100k-task queue answers ~30 MB; the service's own 16 MB bound on
  // incoming messages must not apply to the replies dispatcherctl asked for.
  json big = {{"node_id", "n"}, {"blob", std::string(20u << 20, 'x')}};
  auto pieces = dispatcherd::split_message(big.dump(), 1u << 20);
  ASSERT_TRUE(pieces.ok());
  ReplyCollector c;
  for (const auto& p : *pieces) c.add(p, 0);
  ASSERT_EQ(c.replies().size(), 1u);
  EXPECT_EQ(c.replies()[0]["blob"].get_ref<const std::string&>().size(), 20u << 20);
  EXPECT_EQ(c.chunk_errors(), 0u);
}

TEST(CtlReplies, SatisfiedNeverForZeroExpected) {
  ReplyCollector c;
  EXPECT_FALSE(c.satisfied(0));
  EXPECT_TRUE(c.add("{}", 0));
  EXPECT_FALSE(c.satisfied(0));
  EXPECT_TRUE(c.satisfied(1));
}

TEST(CtlOutput, YamlWithBlankLineOrJson) {
  EXPECT_EQ(format_replies({}, false), "[]\n\n");
  EXPECT_EQ(format_replies({json{{"node_id", "ref-node"}}}, false), "- node_id: ref-node\n\n");
  EXPECT_EQ(format_replies({json{{"b", 1}, {"a", "\u00e9"}}}, true),
            "[{\"a\": \"\\u00e9\", \"b\": 1}]\n");
}

// The body of message i as the Publisher would send it, with time_pub and a uuid fixed.
json body(const SubmitOptions& o, int i, double time_pub = 1) {
  dispatcherd::TaskMessage m = task_message(o, i);
  auto text = dispatcherd::encode_task_message(m, time_pub, m.uuid.empty() ? "generated" : m.uuid);
  EXPECT_TRUE(text.ok()) << text.error().message;
  return text.ok() ? json::parse(*text) : json();
}

TEST(CtlSubmit, MessageBodies) {
  SubmitOptions o;
  o.task = "t";
  dispatcherd::TaskMessage m = task_message(o, 0);
  EXPECT_EQ(m.uuid, "");  // the Publisher makes a fresh uuid4
  auto text = dispatcherd::encode_task_message(m, 12.5, "u");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, R"({"task": "t", "time_pub": 12.5, "uuid": "u"})");

  o.args = json::array();  // empty: left out like upstream
  o.kwargs = json::object();
  o.timeout = 0;
  EXPECT_EQ(body(o, 0).size(), 3u);

  o.args = {1, 2};
  o.kwargs = {{"k", "v"}};
  o.timeout = 5;
  o.delay = 0.5;
  o.on_duplicate = "discard";
  o.uuid = "fixed";
  o.queue = "q";
  EXPECT_EQ(task_message(o, 0).queue, "q");
  EXPECT_EQ(body(o, 0), (json{{"task", "t"},
                              {"time_pub", 1.0},
                              {"uuid", "fixed"},
                              {"args", {1, 2}},
                              {"kwargs", {{"k", "v"}}},
                              {"timeout", 5.0},
                              {"delay", 0.5},
                              {"on_duplicate", "discard"}}));
}

TEST(CtlSubmit, CountGivesDistinctUuids) {
  SubmitOptions o;
  o.task = "t";
  o.count = 3;
  o.uuid = "base";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(task_message(o, i).uuid, "base-" + std::to_string(i));
  o.count = 1;
  EXPECT_EQ(task_message(o, 0).uuid, "base");
}

TEST(CtlSubmit, OnDuplicateNamesRoundTrip) {
  for (const char* name : {"parallel", "discard", "serial", "queue_one"}) {
    auto d = dispatcherd::parse_on_duplicate(name);
    ASSERT_TRUE(d.has_value()) << name;
    EXPECT_EQ(dispatcherd::on_duplicate_name(*d), name);
  }
  EXPECT_FALSE(dispatcherd::parse_on_duplicate("queue-one").has_value());
}

}  // namespace
}  // namespace dispatcherctl
