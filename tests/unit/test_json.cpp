#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/error.h"
#include "core/json.h"

namespace lm {
namespace {

using json = nlohmann::json;

std::string strict_error(std::string_view text) {
  try {
    parse_json_strict(text, "'f.json': ");
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data) << e.what();
    return e.what();
  }
}

TEST(StrictJson, BuildsTheDocumentNlohmannBuilds) {
  for (const char* text :
       {"{}", "[]", "0", "-1", "18446744073709551615", "-9223372036854775808", "1.5e3", "\"s\\u00e9\\n\"", "null",
        "true", R"({"a":[1,{"b":[[],{}],"c":null}],"d":{"e":"f"},"g":-2.5})",
        R"([[1,2],[3,[4,[5]]],{"x":{"y":{"z":[true,false]}}}])", "  {\"a\" : 1 }  \n", R"({"":{"":[""]}})"})
    EXPECT_EQ(parse_json_strict(text, ""), json::parse(text)) << text;
}

TEST(StrictJson, NamesARepeatedKeyByItsPath) {
  EXPECT_EQ(strict_error(R"({"a": 1, "a": 2})"), "'f.json': duplicate key 'a'");
  EXPECT_EQ(strict_error(R"({"a": {"b": 1, "c": {}, "b": 2}})"), "'f.json': duplicate key 'a.b'");
  EXPECT_EQ(strict_error(R"({"a": [{"k": 1}, {"x": 1, "x": 2}]})"), "'f.json': duplicate key 'a[1].x'");
  EXPECT_EQ(strict_error(R"([{"drop": "a", "drop": "b"}])"), "'f.json': duplicate key '[0].drop'");
  EXPECT_EQ(strict_error(R"({"a": [[], [{"b": {"c": 1, "c": 1}}]]})"), "'f.json': duplicate key 'a[1][0].b.c'");
  // The same key in sibling or nested objects is not repeated.
  EXPECT_EQ(strict_error(R"({"a": {"k": 1}, "b": {"k": 1}, "c": [{"k": 1}, {"k": 2}], "k": {"k": {"k": 0}}})"), "");
}

TEST(StrictJson, OrderedKeepsTheKeyOrderAndTheSameChecks) {
  const char* text = R"({"z": 1, "a": {"y": [2, {"b": null}], "c": "d"}, "m": []})";
  const nlohmann::ordered_json j = parse_ordered_json_strict(text, "");
  EXPECT_EQ(j, nlohmann::ordered_json::parse(text));
  EXPECT_EQ(j.dump(), R"({"z":1,"a":{"y":[2,{"b":null}],"c":"d"},"m":[]})");
  auto error = [](std::string_view t) {
    try {
      parse_ordered_json_strict(t, "'f.json': ");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(R"({"a": [{"k": 1}, {"x": 1, "y": 2, "x": 2}]})"), "'f.json': duplicate key 'a[1].x'");
  EXPECT_EQ(error(R"({"a": {"k": 1}, "b": {"k": 1}})"), "");
  EXPECT_EQ(error(std::string(kMaxJsonDepth + 1, '[')), "'f.json': JSON nested deeper than 512 levels");
  EXPECT_EQ(error("{\"a\": 1,}").rfind("'f.json': not valid JSON: ", 0), 0u);
  // Its objects are vectors: a repeated key is found by a hash set, not a scan (200k members).
  std::string big = "{";
  for (int i = 0; i < 200'000; ++i) big += cat(i ? "," : "", "\"k", i, "\":", i);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(parse_ordered_json_strict(big + "}", "").size(), 200'000u);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
  EXPECT_EQ(error(big + ",\"k7\":0}"), "'f.json': duplicate key 'k7'");
}

TEST(StrictJson, RefusesTextThatIsNotJson) {
  for (const char* text : {"", "{", "{\"a\": 1,}", "{\"a\": 1} x", "[1e999]", "{\"\xff\": 1}", "[01]", "{'a': 1}"}) {
    const std::string err = strict_error(text);
    EXPECT_EQ(err.rfind("'f.json': not valid JSON: ", 0), 0u) << text << " -> " << err;
    EXPECT_EQ(err.find("[json.exception"), std::string::npos) << err;
  }
  EXPECT_EQ(strict_error("[1e999]"), "'f.json': not valid JSON: number overflow parsing '1e999'");
}

TEST(StrictJson, BoundsTheNestingDepth) {
  const size_t n = kMaxJsonDepth;
  EXPECT_EQ(strict_error(std::string(n, '[') + std::string(n, ']')), "");
  std::string objects;
  for (size_t i = 0; i < n; ++i) objects += "{\"a\":";
  EXPECT_EQ(strict_error(objects + "1" + std::string(n, '}')), "");
  EXPECT_EQ(strict_error(std::string(n + 1, '[') + std::string(n + 1, ']')), "'f.json': JSON nested deeper than 512 levels");
  EXPECT_EQ(strict_error("{\"a\":" + objects + "1" + std::string(n + 1, '}')),
            "'f.json': JSON nested deeper than 512 levels");
  // Ten million levels (a 10 MB file that took 1.15 GB as a tokenizer.json) stop at level 513.
  EXPECT_EQ(strict_error(std::string(10'000'000, '[')), "'f.json': JSON nested deeper than 512 levels");
}

TEST(StrictJson, ManyNestedObjectsTakeLinearTime) {
  // json::parse with a callback (what parse_json_strict used before) scans the parent object
  // after each nested object closes: ~n^2/2 steps, 160 s for these 200k members (20k took
  // 1.6 s). One SAX pass takes 0.2 s (3 s under ASan in Debug): the bound lies between.
  const size_t n = 200'000;
  std::string text = "{";
  for (size_t i = 0; i < n; ++i) text += cat(i ? "," : "", "\"model.layers.", i, ".weight\":{\"v\":[", i, "]}");
  text += "}";
  const auto t0 = std::chrono::steady_clock::now();
  const json j = parse_json_strict(text, "");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(j.size(), n);
  EXPECT_EQ(j["model.layers.123456.weight"]["v"][0], 123456);
  EXPECT_LT(seconds, 60.0) << "quadratic in the number of members?";
}

}  // namespace
}  // namespace lm
