#include "dispatcherd/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "dispatcherd/fd.h"

namespace dispatcherd {
namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

struct LogCapture : ::testing::Test {
  void SetUp() override {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK), 0);
    r.reset(p[0]);
    w.reset(p[1]);
    log::set_fd(w.get());
    log::set_level(log::Level::Info);
    log::set_format(log::Format::Text);
  }
  void TearDown() override {
    // Leave no backlog behind for the next test (they share the process-wide logger).
    for (int i = 0; i < 1000 && log::pending_bytes() > 0; ++i) {
      read_all(r.get());
      log::flush_pending();
    }
    log::set_fd(1);
    log::set_format(log::Format::Text);
    log::set_level(log::Level::Info);
  }
  Fd r, w;
};

TEST_F(LogCapture, LinesBelowThresholdAreNotWritten) {
  LOG_DEBUG("hidden");
  LOG_INFO("shown " << 42);
  std::string out = read_all(r.get());
  EXPECT_EQ(out.find("hidden"), std::string::npos);
  EXPECT_NE(out.find("INFO"), std::string::npos);
  EXPECT_NE(out.find("shown 42\n"), std::string::npos);
}

TEST_F(LogCapture, JsonLinesEscapeAndSurviveInvalidUtf8) {
  log::set_format(log::Format::Json);
  LOG_WARNING("quote \" newline \n bad \xff byte");
  std::string out = read_all(r.get());
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["level"], "WARNING");
  EXPECT_NE(j["msg"].get<std::string>().find("quote \" newline \n bad"), std::string::npos);
}

TEST_F(LogCapture, StalledOutputNeverBlocksAndDropsPastTheBound) {
  // Fill the pipe so it takes nothing more, then log more than the 1 MiB backlog.
  std::string block(65536, 'x');
  while (::write(w.get(), block.data(), block.size()) > 0) {
  }
  std::string big(10000, 'y');
  for (int i = 0; i < 200; ++i) LOG_INFO(big);  // ~2 MB of lines: must return promptly
  EXPECT_GT(log::pending_bytes(), 0u);
  EXPECT_LE(log::pending_bytes(), std::size_t{1} << 20);
  EXPECT_GT(log::dropped_lines(), 0u);
  read_all(r.get());  // the reader catches up...
  log::flush_pending();
  EXPECT_LT(log::pending_bytes(), std::size_t{1} << 20);  // ...and the backlog drains
}

TEST(LogLevels, ParseAcceptsAliasesCaseInsensitively) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::Debug);
  EXPECT_EQ(log::parse_level("WARN"), log::Level::Warning);
  EXPECT_EQ(log::parse_level("Fatal"), log::Level::Critical);
  EXPECT_FALSE(log::parse_level("bogus").has_value());
}

}  // namespace
}  // namespace dispatcherd
