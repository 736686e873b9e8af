// dispatcherctl's command line (upstream-spec §5.2): subcommands from the shared command
// list, common options before and after the subcommand (quirk #7 fixed), control_data only
// from the options given, exit codes 0 (help) and 2 (usage errors), and `submit`.

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "options.h"

namespace dispatcherctl {
namespace {

using nlohmann::json;

struct Parsed {
  ParseResult result;
  std::string out, err;
};

Parsed parse(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  Parsed p{parse_command_line(args, out, err), {}, {}};
  p.out = out.str();
  p.err = err.str();
  return p;
}

Invocation parse_ok(const std::vector<std::string>& args) {
  Parsed p = parse(args);
  EXPECT_TRUE(p.result.invocation.has_value()) << p.err;
  return p.result.invocation.value_or(Invocation{});
}

TEST(CtlArgs, DefaultsOfAControlCommand) {
  Invocation inv = parse_ok({"alive"});
  EXPECT_FALSE(inv.submit);
  EXPECT_EQ(inv.control.command, "alive");
  EXPECT_EQ(inv.control.data, json::object());
  EXPECT_EQ(inv.common.config, "");
  EXPECT_EQ(inv.common.expected_replies, 1);
  EXPECT_DOUBLE_EQ(inv.common.timeout, 1.0);
  EXPECT_EQ(inv.common.log_level, dispatcherd::log::Level::Warning);
  EXPECT_FALSE(inv.common.json);
  EXPECT_EQ(inv.common.socket, "");
}

TEST(CtlArgs, EveryUpstreamCommandExists) {
  for (const char* c : {"running", "cancel", "alive", "aio_tasks", "workers", "producers",
                        "metrics", "main", "status", "chunks"}) {
    EXPECT_EQ(parse_ok({c}).control.command, c);
  }
  EXPECT_EQ(parse(std::vector<std::string>{"run"}).result.exit_code, 2);  // not in the CLI
}

TEST(CtlArgs, CommonOptionsAfterTheSubcommand) {
  Invocation inv = parse_ok({"workers", "--config", "x.yml", "--expected-replies=2", "--timeout",
                             "2.5", "--log-level", "DEBUG", "--json", "--socket", "s.sock"});
  EXPECT_EQ(inv.common.config, "x.yml");
  EXPECT_EQ(inv.common.expected_replies, 2);
  EXPECT_DOUBLE_EQ(inv.common.timeout, 2.5);
  EXPECT_EQ(inv.common.log_level, dispatcherd::log::Level::Debug);
  EXPECT_TRUE(inv.common.json);
  EXPECT_EQ(inv.common.socket, "s.sock");
}

TEST(CtlArgs, CommonOptionsBeforeTheSubcommandAreHonoured) {
  // Upstream's argparse silently resets these to the subcommand's defaults.
  Invocation inv = parse_ok({"--expected-replies=2", "--config", "y.yml", "--timeout", "3",
                             "--log-level", "ERROR", "--json", "alive"});
  EXPECT_EQ(inv.common.expected_replies, 2);
  EXPECT_EQ(inv.common.config, "y.yml");
  EXPECT_DOUBLE_EQ(inv.common.timeout, 3.0);
  EXPECT_EQ(inv.common.log_level, dispatcherd::log::Level::Error);
  EXPECT_TRUE(inv.common.json);
}

TEST(CtlArgs, AfterTheSubcommandWinsOverBefore) {
  Invocation inv =
      parse_ok({"--expected-replies", "5", "--config", "a.yml", "main", "--expected-replies", "3"});
  EXPECT_EQ(inv.common.expected_replies, 3);
  EXPECT_EQ(inv.common.config, "a.yml");  // only given before: kept
}

TEST(CtlArgs, ControlDataHoldsOnlyGivenOptions) {
  EXPECT_EQ(parse_ok({"running"}).control.data, json::object());
  EXPECT_EQ(parse_ok({"running", "--task", "t"}).control.data, (json{{"task", "t"}}));
  EXPECT_EQ(parse_ok({"cancel", "--uuid", "u1", "--task", ""}).control.data,
            (json{{"task", ""}, {"uuid", "u1"}}));
  EXPECT_EQ(parse_ok({"aio_tasks", "--limit", "0"}).control.data, (json{{"limit", 0}}));
  EXPECT_EQ(parse_ok({"set_log_level", "--level", "INFO"}).control.data, (json{{"level", "INFO"}}));
}

TEST(CtlArgs, TaskFilterTakesJsonArgsAndKwargs) {
  EXPECT_EQ(parse_ok({"cancel", "--args", "[1, \"a\"]", "--kwargs", "{\"k\": null}"}).control.data,
            (json{{"args", json::array({1, "a"})}, {"kwargs", {{"k", nullptr}}}}));
  Parsed bad = parse({"running", "--args", "{\"a\": 1}"});
  EXPECT_EQ(bad.result.exit_code, 2);
  EXPECT_NE(bad.err.find("--args: must be a JSON array"), std::string::npos) << bad.err;
  EXPECT_EQ(parse({"running", "--kwargs", "[1"}).result.exit_code, 2);
  EXPECT_EQ(parse({"alive", "--args", "[]"}).result.exit_code, 2);  // not a filter command
}

TEST(CtlArgs, UsageErrorsExitTwoWithAMessage) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"nosuch"},
                                             {"alive", "--bogus"},
                                             {"set_log_level"},
                                             {"set_log_level", "--level", "debug"},
                                             {"alive", "--expected-replies", "x"},
                                             {"alive", "--expected-replies", "-1"},
                                             {"alive", "--timeout", "0"},
                                             {"alive", "--log-level", "LOUD"},
                                             {"aio_tasks", "--limit", "many"}}) {
    Parsed p = parse(args);
    EXPECT_FALSE(p.result.invocation.has_value());
    EXPECT_EQ(p.result.exit_code, 2) << testing::PrintToString(args);
    EXPECT_EQ(p.err.rfind("dispatcherctl: error: ", 0), 0u) << p.err;
  }
}

TEST(CtlArgs, HelpExitsZeroOnStdout) {
  Parsed top = parse({"--help"});
  EXPECT_EQ(top.result.exit_code, 0);
  EXPECT_FALSE(top.result.invocation.has_value());
  EXPECT_NE(top.out.find("set_log_level"), std::string::npos);
  EXPECT_NE(top.out.find("submit"), std::string::npos);
  Parsed sub = parse({"running", "--help"});
  EXPECT_EQ(sub.result.exit_code, 0);
  EXPECT_NE(sub.out.find("--uuid"), std::string::npos);
  EXPECT_TRUE(sub.err.empty());
}

TEST(CtlArgs, Submit) {
  Invocation inv =
      parse_ok({"--config", "c.yml",      "submit",      "my.task", "--args",         "[1]",
                "--kwargs", "{\"a\": 2}", "--queue",     "q",       "--uuid",         "u",
                "--delay",  "1.5",        "--timeout",   "30",      "--on-duplicate", "serial",
                "--count",  "5",          "--log-level", "INFO"});
  ASSERT_TRUE(inv.submit);
  const SubmitOptions& o = inv.submit_options;
  EXPECT_EQ(inv.common.config, "c.yml");
  EXPECT_EQ(inv.common.log_level, dispatcherd::log::Level::Info);
  EXPECT_EQ(o.task, "my.task");
  EXPECT_EQ(o.args, json::array({1}));
  EXPECT_EQ(o.kwargs, (json{{"a", 2}}));
  EXPECT_EQ(o.queue, "q");
  EXPECT_EQ(o.uuid, "u");
  EXPECT_EQ(o.delay, 1.5);
  EXPECT_DOUBLE_EQ(o.timeout, 30.0);
  EXPECT_EQ(o.on_duplicate, "serial");
  EXPECT_EQ(o.count, 5);
}

TEST(CtlArgs, SubmitDefaultsAndErrors) {
  const SubmitOptions o = parse_ok({"submit", "t"}).submit_options;
  EXPECT_TRUE(o.args.is_null());
  EXPECT_TRUE(o.kwargs.is_null());
  EXPECT_FALSE(o.delay.has_value());
  EXPECT_FALSE(o.on_duplicate.has_value());
  EXPECT_EQ(o.count, 1);
  EXPECT_EQ(parse({"submit"}).result.exit_code, 2);
  EXPECT_EQ(parse({"submit", "t", "--count", "0"}).result.exit_code, 2);
  EXPECT_EQ(parse({"submit", "t", "--on-duplicate", "maybe"}).result.exit_code, 2);
  EXPECT_EQ(parse({"submit", "t", "--expected-replies", "2"}).result.exit_code, 2);
  // Before `submit`, --timeout is the reply timeout: refused rather than silently ignored.
  Parsed p = parse({"--timeout", "5", "submit", "t"});
  EXPECT_EQ(p.result.exit_code, 2);
  EXPECT_NE(p.err.find("does not apply to submit"), std::string::npos) << p.err;
}

}  // namespace
}  // namespace dispatcherctl
