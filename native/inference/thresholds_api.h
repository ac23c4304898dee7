// Torch-free threshold search over probability maps (the first place's (top, area, bottom) triplet
// rule, SPEC section 4). Each map is summarised once into cumulative counts over threshold levels
// (pixels above each level, and those of them inside the truth); every triplet is then scored
// from the summaries alone, never re-thresholding a map. Plain C++17 with std::thread: no LibTorch
// header, so this file builds in about a second (CMakeLists.txt keeps it out of the torch
// precompiled header).
#pragma once

#include <cstdint>
#include <vector>

namespace pn::inference {

/** Per-map cumulative counts: `above[m * levels + k]` = #(p > level k) of map m. */
struct MapSummaries {
  int64_t count = 0;
  int64_t levels = 0;
  std::vector<int32_t> above;
  /** #(p > level k and truth) per map and level; empty when summarised without truth. */
  std::vector<int32_t> truthAbove;
  /** Truth pixels per map; empty without truth. */
  std::vector<int32_t> truthArea;
};

/**
 * Summarises `count` uint8 maps of `pixels` each (v = round(p * 255)): 256 levels, level k is
 * v > k (so a threshold t is level floor(t * 255), exact for any t). `truth` (optional, same
 * layout, non-zero = inside) adds the truth counts. Maps are split over `threads` threads.
 */
MapSummaries summariseU8(const uint8_t* maps, int64_t count, int64_t pixels, const uint8_t* truth, int threads);

/**
 * Summarises float32 maps over the given sorted `thresholds`, distinct in float32 (level k is p > float(thresholds[k])).
 */
MapSummaries summariseF32(const float* maps, int64_t count, int64_t pixels, const uint8_t* truth, const std::vector<double>& thresholds,
                          int threads);

/** One triplet as level indices: empty when above[top] * scale < area, else the mask p > level bottom. */
struct TripletLevels {
  int32_t top = 0;
  double area = 0;
  int32_t bottom = 0;
};

struct TripletScore {
  double meanDice = 0;
  /** Means over images with empty / non-empty truth (NaN when there are none). */
  double meanEmpty = 0;
  double meanNonEmpty = 0;
  /** Images predicted positive. */
  int64_t positives = 0;
};

/**
 * Scores every triplet on summaries with truth: per image Dice = 2|P n T| / (|P| + |T|), 1 when
 * both are empty, averaged. `scale` is the area of one map pixel counted at the triplet's size.
 */
std::vector<TripletScore> scoreTriplets(const int32_t* above, const int32_t* truthAbove, const int32_t* truthArea, int64_t count, int64_t levels,
                                        const std::vector<TripletLevels>& triplets, double scale);

}  // namespace pn::inference
