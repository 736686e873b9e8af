// The control command table against a fake view: reply shapes and exact error strings of
// upstream-spec §4.4 / Appendix A, and the quirks the port fixes (§12.3 #4, #6).

#include "dispatcherd/control/commands.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "dispatcherd/control_protocol.h"
#include "fake_control_view.h"

namespace dispatcherd {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using testing::FakeControlView;

std::vector<std::string> keys_of(const ordered_json& obj) {
  std::vector<std::string> out;
  for (auto it = obj.begin(); it != obj.end(); ++it) out.push_back(it.key());
  return out;
}

json sleeper(const std::string& uuid, const std::string& task = "demo.sleep") {
  return {{"task", task}, {"uuid", uuid}, {"args", json::array()}};
}

TEST(Control, Spec4_4_UnknownCommandNamesIt) {
  FakeControlView view;
  EXPECT_EQ(run_control_command(view, "not-a-command", json::object()),
            ordered_json({{"error", "No control method not-a-command"}}));
}

TEST(Control, Quirk6_ModuleAttributesAndUnderscoreNamesAreUnknown) {
  FakeControlView view;
  for (std::string name : {"logger", "asyncio", "task_filter_match", "_private", "__init__", "",
                           "Running", "running "}) {
    ordered_json reply = run_control_command(view, name, json::object());
    EXPECT_EQ(reply, ordered_json({{"error", "No control method " + name}})) << name;
  }
}

TEST(Control, Spec4_4_AliveRepliesEmptyObject) {
  FakeControlView view;
  EXPECT_EQ(run_control_command(view, "alive", json::object()), ordered_json::object());
  EXPECT_EQ(run_control_command(view, "alive", json()), ordered_json::object());
}

TEST(Control, Spec4_3_NonObjectControlDataIsAnErrorNotAThrow) {
  FakeControlView view;
  for (const json& bad : {json::array({1}), json("x"), json(3), json(true)}) {
    ordered_json reply = run_control_command(view, "running", bad);
    ASSERT_TRUE(reply.contains("error")) << bad.dump();
    EXPECT_NE(reply["error"].get<std::string>().find("control_data must be an object"),
              std::string::npos);
  }
}

TEST(Control, Spec4_4_RunningListsInOrderWithKeys) {
  FakeControlView view;
  view.running = {{10, sleeper("a")}, {2, sleeper("b")}};
  view.blocked = {sleeper("c")};
  view.queued = {sleeper("d"), sleeper("e")};
  view.delayed = {sleeper("f")};
  ordered_json reply = run_control_command(view, "running", json::object());
  EXPECT_EQ(keys_of(reply), (std::vector<std::string>{"worker-10", "worker-2", "blocked-0",
                                                      "queued-0", "queued-1", "delayed-0"}));
  EXPECT_EQ(reply["queued-1"]["uuid"], "e");
  // Serialized order is kept too (nlohmann::json would sort "worker-10" before "blocked-0").
  std::string text = dump_reply(reply);
  EXPECT_LT(text.find("worker-10"), text.find("worker-2"));
  EXPECT_LT(text.find("worker-2"), text.find("blocked-0"));
}

TEST(Control, Spec4_4_RunningFiltersByUuidAndTask) {
  FakeControlView view;
  view.running = {{0, sleeper("a", "t1")}};
  view.queued = {sleeper("b", "t2"), sleeper("c", "t1")};
  EXPECT_EQ(keys_of(run_control_command(view, "running", {{"uuid", "b"}})),
            (std::vector<std::string>{"queued-0"}));
  EXPECT_EQ(keys_of(run_control_command(view, "running", {{"task", "t1"}})),
            (std::vector<std::string>{"worker-0", "queued-1"}));
  EXPECT_EQ(run_control_command(view, "running", {{"uuid", "zzz"}}), ordered_json::object());
}

TEST(Control, Spec4_4_RunningEmptyIsEmptyObject) {
  FakeControlView view;
  EXPECT_EQ(run_control_command(view, "running", json::object()), ordered_json::object());
}

TEST(Control, Quirk4_CancelRemovesEveryMatch) {
  FakeControlView view;
  view.queued = {sleeper("x", "dup"), sleeper("y", "dup"), sleeper("z", "dup"),
                 sleeper("w", "other")};
  ordered_json reply = run_control_command(view, "cancel", {{"task", "dup"}});
  // Upstream removed queued-0 and queued-1 (originally 0 and 2) and left the middle one.
  EXPECT_EQ(keys_of(reply), (std::vector<std::string>{"queued-0", "queued-1", "queued-2"}));
  EXPECT_EQ(reply["queued-1"]["uuid"], "y");
  ASSERT_EQ(view.cancel_filters.size(), 1u);
  EXPECT_EQ(view.cancel_filters[0].task, "dup");
  EXPECT_TRUE(view.cancel_filters[0].uuid.is_null());
  ASSERT_EQ(view.queued.size(), 1u);
  EXPECT_EQ(view.queued[0]["uuid"], "w");
}

TEST(Control, Spec4_4_CancelListsRunningAndDelayedMatches) {
  FakeControlView view;
  view.running = {{3, sleeper("foobar")}};
  view.delayed = {sleeper("foobar")};
  ordered_json reply = run_control_command(view, "cancel", {{"uuid", "foobar"}});
  EXPECT_EQ(keys_of(reply), (std::vector<std::string>{"worker-3", "delayed-0"}));
  EXPECT_EQ(view.cancelled_workers, (std::vector<int>{3}));
  EXPECT_TRUE(view.delayed.empty());
}

TEST(Control, Spec4_4_BodiesPassThrough) {
  FakeControlView view;
  view.workers_body = {{"worker-0", {{"worker_id", 0}, {"status", "ready"}}}};
  view.producers_body = {{"socket-producer", {{"produced_count", 4}}}};
  view.main_body = {{"received_count", 13}};
  view.chunks_body = {{"status", {{"active_messages", 0}}}, {"partials", json::object()}};
  EXPECT_EQ(run_control_command(view, "workers", {}), ordered_json(view.workers_body));
  EXPECT_EQ(run_control_command(view, "producers", {}), ordered_json(view.producers_body));
  EXPECT_EQ(run_control_command(view, "metrics", {}), ordered_json({{"enabled", false}}));
  EXPECT_EQ(run_control_command(view, "main", {}), ordered_json(view.main_body));
  EXPECT_EQ(run_control_command(view, "chunks", {}), ordered_json(view.chunks_body));
}

TEST(Control, Spec4_4_StatusKeysInOrder) {
  FakeControlView view;
  view.queued = {sleeper("q")};
  ordered_json reply = run_control_command(view, "status", json::object());
  EXPECT_EQ(keys_of(reply), (std::vector<std::string>{"running", "aio_tasks", "workers",
                                                      "producers", "metrics", "main", "chunks"}));
  EXPECT_EQ(keys_of(reply["running"]), (std::vector<std::string>{"queued-0"}));
  EXPECT_TRUE(view.cancel_filters.empty());
  EXPECT_TRUE(view.levels_set.empty());
  // With node_id appended by the service it stays last when serialized.
  reply["node_id"] = "n1";
  std::string text = dump_reply(reply);
  EXPECT_EQ(text.rfind("\"node_id\": \"n1\"}"), text.size() - 16);
  EXPECT_EQ(text.find("{\"running\": "), 0u);
}

TEST(Control, Spec4_4_AioTasksDefaultLimitAndResultsTask) {
  FakeControlView view;
  view.activities_body = json::object();  // the view forgot it: the command adds it
  ordered_json reply = run_control_command(view, "aio_tasks", json::object());
  ASSERT_TRUE(reply.contains("results_task"));
  EXPECT_EQ(reply["results_task"]["done"], false);
  std::string stack = reply["results_task"]["stack"];
  EXPECT_FALSE(stack.empty());
  EXPECT_EQ(stack.find("No stack for"), std::string::npos);
  EXPECT_EQ(view.activity_limits, (std::vector<int>{6}));
  reply = run_control_command(view, "aio_tasks", {{"limit", 0}});
  EXPECT_NE(reply["results_task"]["stack"].get<std::string>().find("No stack for"),
            std::string::npos);
  EXPECT_EQ(view.activity_limits.back(), 0);
}

TEST(Control, Spec4_4_AioTasksRejectsNonIntLimit) {
  FakeControlView view;
  for (const json& bad : {json("3"), json(true), json(2.5), json(-1)})
    EXPECT_TRUE(run_control_command(view, "aio_tasks", {{"limit", bad}}).contains("error"))
        << bad.dump();
  EXPECT_TRUE(view.activity_limits.empty());
}

TEST(Control, Spec4_4_SetLogLevelFirstCallReportsNotset) {
  FakeControlView view;
  EXPECT_EQ(
      run_control_command(view, "set_log_level", {{"level", "debug"}}),
      ordered_json({{"logger", "dispatcherd"}, {"level", "DEBUG"}, {"previous_level", "NOTSET"}}));
  ordered_json second = run_control_command(view, "set_log_level", {{"level", " Warn "}});
  EXPECT_EQ(second["level"], "WARNING");
  EXPECT_EQ(second["previous_level"], "DEBUG");
  EXPECT_EQ(keys_of(second), (std::vector<std::string>{"logger", "level", "previous_level"}));
  EXPECT_EQ(view.levels_set, (std::vector<log::Level>{log::Level::Debug, log::Level::Warning}));
}

TEST(Control, Spec4_4_SetLogLevelAcceptsEveryPythonName) {
  FakeControlView view;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"DEBUG", "DEBUG"}, {"info", "INFO"},         {"WARNING", "WARNING"}, {"warn", "WARNING"},
      {"ERROR", "ERROR"}, {"critical", "CRITICAL"}, {"FATAL", "CRITICAL"},  {"notset", "NOTSET"}};
  for (const auto& [given, name] : cases)
    EXPECT_EQ(run_control_command(view, "set_log_level", {{"level", given}})["level"], name)
        << given;
}

TEST(Control, Spec4_4_SetLogLevelIntAndNonStandardInt) {
  FakeControlView view;
  EXPECT_EQ(run_control_command(view, "set_log_level", {{"level", 40}})["level"], "ERROR");
  EXPECT_EQ(run_control_command(view, "set_log_level", {{"level", 15}})["level"], "Level 15");
  EXPECT_EQ(run_control_command(view, "set_log_level", {{"level", 20}})["previous_level"],
            "Level 15");
  EXPECT_EQ(static_cast<int>(view.levels_set[1]), 15);
}

TEST(Control, Spec4_4_SetLogLevelUnknownNameQuotesOriginal) {
  FakeControlView view;
  EXPECT_EQ(run_control_command(view, "set_log_level", {{"level", "bogus"}}),
            ordered_json({{"error", "Unknown log level 'bogus'."}}));
  EXPECT_EQ(run_control_command(view, "set_log_level", {{"level", " nope "}})["error"],
            "Unknown log level ' nope '.");
  EXPECT_TRUE(view.levels_set.empty());
}

TEST(Control, Spec4_4_SetLogLevelRejectsBool) {
  FakeControlView view;
  const std::string text = "Log level must be provided as a string or int via the \"level\" key.";
  for (const json& data : {json{{"level", true}}, json{{"level", json::array({"DEBUG"})}},
                           json::object(), json{{"level", nullptr}}, json{{"level", 10.0}}})
    EXPECT_EQ(run_control_command(view, "set_log_level", data), ordered_json({{"error", text}}))
        << data.dump();
  EXPECT_TRUE(view.levels_set.empty());
}

TEST(Control, Spec4_4_RunAcksDataExactly) {
  FakeControlView view;
  json data = {{"task", "demo.noop"}, {"uuid", "via-run"}};
  EXPECT_EQ(run_control_command(view, "run", data), ordered_json({{"ack", data}}));
  ASSERT_EQ(view.submitted.size(), 1u);
  EXPECT_EQ(view.submitted[0], data);
}

TEST(Control, Spec4_4_RunWithoutControlProducerReportsError) {
  FakeControlView view;
  view.submit_error = std::string(kNoControlProducerError);
  EXPECT_EQ(run_control_command(view, "run", {{"task", "demo.noop"}}),
            ordered_json({{"error",
                           "A ControlProducer producer is not enabled. Add it to the list of "
                           "producers in the service config to use this."}}));
}

TEST(Control, Spec4_3_ThrowingViewBecomesErrorReply) {
  FakeControlView view;
  view.workers_throws = "boom";
  ordered_json reply;
  EXPECT_NO_THROW(reply = run_control_command(view, "workers", json::object()));
  EXPECT_EQ(reply["error"], "control command workers failed: boom");
}

TEST(Control, Spec5_2_CommandListMatchesCli) {
  std::vector<std::string> cli;
  for (const auto& c : control_commands())
    if (c.cli_visible) cli.emplace_back(c.name);
  EXPECT_EQ(cli, (std::vector<std::string>{"running", "cancel", "alive", "aio_tasks", "workers",
                                           "producers", "metrics", "main", "status", "chunks",
                                           "set_log_level"}));
  ASSERT_NE(find_control_command("run"), nullptr);
  EXPECT_FALSE(find_control_command("run")->cli_visible);
  EXPECT_EQ(find_control_command("nope"), nullptr);
  const ControlCommandInfo* level = find_control_command("set_log_level");
  ASSERT_EQ(level->args.size(), 1u);
  EXPECT_TRUE(level->args[0].required);
  EXPECT_EQ(level->args[0].choices.size(), 5u);
  EXPECT_EQ(find_control_command("aio_tasks")->args[0].type, ControlArgType::Int);
  // Every listed command is answered (none falls through to "No control method").
  FakeControlView view;
  for (const auto& c : control_commands()) {
    ordered_json reply = run_control_command(view, std::string(c.name), json::object());
    if (reply.contains("error")) {
      EXPECT_EQ(reply["error"].get<std::string>().find("No control method"), std::string::npos)
          << c.name;
    }
  }
}

TEST(Control, DumpReplyUsesPythonSeparatorsAndAscii) {
  ordered_json reply = ordered_json::object();
  reply["z"] = 1;
  reply["a"] = {{"b", json::array({1.5, "é", nullptr, true})}};
  EXPECT_EQ(dump_reply(reply), R"({"z": 1, "a": {"b": [1.5, "\u00e9", null, true]}})");
}

TEST(Control, PythonLevelNames) {
  EXPECT_EQ(python_level_name(0), "NOTSET");
  EXPECT_EQ(python_level_name(50), "CRITICAL");
  EXPECT_EQ(python_level_name(-5), "Level -5");
}

}  // namespace
}  // namespace dispatcherd
