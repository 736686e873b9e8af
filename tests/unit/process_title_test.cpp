#include "dispatcherd/pool/process_title.h"

#include <gtest/gtest.h>

#include <string>

namespace dispatcherd::process_title {
namespace {

// What Linux reports for a rewritten argv area whose last byte is not NUL: everything up to
// and including the first NUL (fs/proc/base.c, get_mm_proctitle).
std::string kernel_view(const std::string& area) {
  if (!area.empty() && area.back() != '\0') return area.substr(0, area.find('\0'));
  return area;
}

TEST(ProcessTitle, Design6_ShortTitleIsReportedExactly) {
  std::string area(64, 'x');
  EXPECT_EQ(write_title(area, "dispatcherd: worker 3 idle"), 26u);
  EXPECT_EQ(kernel_view(area), "dispatcherd: worker 3 idle");
  EXPECT_NE(area.back(), '\0');
}

TEST(ProcessTitle, Design6_LongTitleIsTruncatedToTheArea) {
  std::string area(16, 'x');
  EXPECT_EQ(write_title(area, "dispatcherd: worker 3 running demo.hello"), 14u);
  EXPECT_EQ(kernel_view(area), "dispatcherd: w");
}

TEST(ProcessTitle, Design6_ShorterTitleClearsTheLongerOne) {
  std::string area(64, 'x');
  write_title(area, "dispatcherd: worker 3 running dispatcherd.builtin.sleep");
  write_title(area, "dispatcherd: worker 3 idle");
  EXPECT_EQ(kernel_view(area), "dispatcherd: worker 3 idle");
  EXPECT_EQ(area.find("sleep"), std::string::npos);
}

TEST(ProcessTitle, Design6_TinyAreaIsLeftAlone) {
  std::string area(1, 'x');
  EXPECT_EQ(write_title(area, "title"), 0u);
  EXPECT_EQ(area, "x");
}

}  // namespace
}  // namespace dispatcherd::process_title
