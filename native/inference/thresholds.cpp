// Threshold search kernels; see thresholds_api.h.
#include "thresholds_api.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace pn::inference {
namespace {

/**
 * Runs body(begin, end) over [0, count) split into at most `threads` contiguous chunks. No
 * exception leaves a pool thread (that would be std::terminate): the first one is rethrown on the
 * calling thread after every thread has joined; a chunk whose thread cannot start runs here.
 */
template <typename Body>
void parallelFor(int64_t count, int threads, Body body) {
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(threads, count));
  if (n <= 1) {
    body(0, count);
    return;
  }
  std::mutex errorMutex;
  std::exception_ptr error;
  auto run = [&](int64_t begin, int64_t end) noexcept {
    try {
      body(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(errorMutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  std::vector<std::pair<int64_t, int64_t>> here{{0, std::min(count, (count + n - 1) / n)}};
  const int64_t chunk = (count + n - 1) / n;
  try {
    pool.reserve(static_cast<size_t>(n - 1));
  } catch (...) {
  }
  for (int64_t t = 1; t < n; ++t) {
    const int64_t begin = t * chunk;
    const int64_t end = std::min(count, begin + chunk);
    if (begin >= end) break;
    try {
      pool.emplace_back(run, begin, end);
    } catch (...) {
      here.emplace_back(begin, end);  // no thread: this one does the chunk
    }
  }
  for (const auto& [begin, end] : here) run(begin, end);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

int resolveThreads(int threads) {
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

/** Turns a histogram over bins 0..levels (bin b = "above levels 0..b-1") into counts above each level. */
void cumulate(const int64_t* hist, int64_t levels, int32_t* above) {
  int64_t running = 0;
  for (int64_t k = levels - 1; k >= 0; --k) {
    running += hist[k + 1];
    above[k] = static_cast<int32_t>(running);
  }
}

MapSummaries allocate(int64_t count, int64_t levels, bool withTruth) {
  MapSummaries s;
  s.count = count;
  s.levels = levels;
  s.above.assign(static_cast<size_t>(count * levels), 0);
  if (withTruth) {
    s.truthAbove.assign(static_cast<size_t>(count * levels), 0);
    s.truthArea.assign(static_cast<size_t>(count), 0);
  }
  return s;
}

void checkPixels(int64_t pixels) {
  if (pixels <= 0 || pixels > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("map pixel count out of range");
}

}  // namespace

MapSummaries summariseU8(const uint8_t* maps, int64_t count, int64_t pixels, const uint8_t* truth, int threads) {
  checkPixels(pixels);
  constexpr int64_t kLevels = 256;  // level k: v > k; bin v is above levels 0..v-1
  MapSummaries s = allocate(count, kLevels, truth != nullptr);
  parallelFor(count, resolveThreads(threads), [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const uint8_t* p = maps + m * pixels;
      // Four interleaved histograms break the store-to-load chain on runs of equal values.
      std::array<std::array<int64_t, 256>, 4> h{};
      std::array<std::array<int64_t, 256>, 4> ht{};
      int64_t i = 0;
      if (truth == nullptr) {
        for (; i + 4 <= pixels; i += 4) {
          ++h[0][p[i]];
          ++h[1][p[i + 1]];
          ++h[2][p[i + 2]];
          ++h[3][p[i + 3]];
        }
        for (; i < pixels; ++i) ++h[0][p[i]];
      } else {
        const uint8_t* t = truth + m * pixels;
        for (; i + 4 <= pixels; i += 4) {
          ++h[0][p[i]];
          ++h[1][p[i + 1]];
          ++h[2][p[i + 2]];
          ++h[3][p[i + 3]];
          ht[0][p[i]] += t[i] != 0;
          ht[1][p[i + 1]] += t[i + 1] != 0;
          ht[2][p[i + 2]] += t[i + 2] != 0;
          ht[3][p[i + 3]] += t[i + 3] != 0;
        }
        for (; i < pixels; ++i) {
          ++h[0][p[i]];
          ht[0][p[i]] += t[i] != 0;
        }
      }
      // hist[v] counts value v; v is above levels 0..v-1 (v > k), which is cumulate()'s bin v.
      std::array<int64_t, kLevels + 1> hist{};
      std::array<int64_t, kLevels + 1> histT{};
      int64_t area = 0;
      for (int v = 0; v < 256; ++v) {
        hist[v] = h[0][v] + h[1][v] + h[2][v] + h[3][v];
        histT[v] = ht[0][v] + ht[1][v] + ht[2][v] + ht[3][v];
        area += histT[v];
      }
      cumulate(hist.data(), kLevels, s.above.data() + m * kLevels);
      if (truth != nullptr) {
        cumulate(histT.data(), kLevels, s.truthAbove.data() + m * kLevels);
        s.truthArea[static_cast<size_t>(m)] = static_cast<int32_t>(area);
      }
    }
  });
  return s;
}

MapSummaries summariseF32(const float* maps, int64_t count, int64_t pixels, const uint8_t* truth, const std::vector<double>& thresholds,
                          int threads) {
  checkPixels(pixels);
  const int64_t levels = static_cast<int64_t>(thresholds.size());
  if (levels == 0) throw std::invalid_argument("no thresholds to summarise float maps over");
  for (size_t k = 1; k < thresholds.size(); ++k) {
    if (!(thresholds[k - 1] < thresholds[k])) throw std::invalid_argument("thresholds must be sorted and distinct");
  }
  MapSummaries s = allocate(count, levels, truth != nullptr);
  // Compared in float32, the maps' type (as numpy and PyTorch compare a float32 array with a scalar).
  std::vector<float> cuts(thresholds.begin(), thresholds.end());
  for (size_t k = 1; k < cuts.size(); ++k) {
    if (!(cuts[k - 1] < cuts[k])) throw std::invalid_argument("thresholds must stay distinct in float32");
  }
  const float* first = cuts.data();
  const float* last = first + levels;
  parallelFor(count, resolveThreads(threads), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> hist(static_cast<size_t>(levels + 1));
    std::vector<int64_t> histT(static_cast<size_t>(levels + 1));
    for (int64_t m = begin; m < end; ++m) {
      std::fill(hist.begin(), hist.end(), 0);
      std::fill(histT.begin(), histT.end(), 0);
      const float* p = maps + m * pixels;
      const uint8_t* t = truth == nullptr ? nullptr : truth + m * pixels;
      int64_t area = 0;
      float lastValue = std::numeric_limits<float>::quiet_NaN();
      int64_t lastBin = 0;
      for (int64_t i = 0; i < pixels; ++i) {
        const float v = p[i];
        // bin = the number of thresholds strictly below v: v is above levels 0..bin-1.
        if (v != lastValue) {
          lastValue = v;
          lastBin = std::lower_bound(first, last, v) - first;
        }
        ++hist[static_cast<size_t>(lastBin)];
        if (t != nullptr && t[i] != 0) {
          ++histT[static_cast<size_t>(lastBin)];
          ++area;
        }
      }
      cumulate(hist.data(), levels, s.above.data() + m * levels);
      if (t != nullptr) {
        cumulate(histT.data(), levels, s.truthAbove.data() + m * levels);
        s.truthArea[static_cast<size_t>(m)] = static_cast<int32_t>(area);
      }
    }
  });
  return s;
}

std::vector<TripletScore> scoreTriplets(const int32_t* above, const int32_t* truthAbove, const int32_t* truthArea, int64_t count, int64_t levels,
                                        const std::vector<TripletLevels>& triplets, double scale) {
  for (const TripletLevels& tr : triplets) {
    if (tr.top < 0 || tr.top >= levels || tr.bottom < 0 || tr.bottom >= levels) throw std::invalid_argument("triplet level out of range");
  }
  std::vector<TripletScore> out(triplets.size());
  for (size_t j = 0; j < triplets.size(); ++j) {
    const TripletLevels& tr = triplets[j];
    double sumEmpty = 0, sumNonEmpty = 0;
    int64_t nEmpty = 0, nNonEmpty = 0, positives = 0;
    for (int64_t m = 0; m < count; ++m) {
      const int32_t* a = above + m * levels;
      const int32_t* at = truthAbove + m * levels;
      const int64_t truthPixels = truthArea[m];
      double dice;
      if (static_cast<double>(a[tr.top]) * scale < tr.area) {
        dice = truthPixels == 0 ? 1.0 : 0.0;
      } else {
        ++positives;
        const int64_t pred = a[tr.bottom];
        const int64_t total = pred + truthPixels;
        dice = total == 0 ? 1.0 : 2.0 * static_cast<double>(at[tr.bottom]) / static_cast<double>(total);
      }
      if (truthPixels == 0) {
        sumEmpty += dice;
        ++nEmpty;
      } else {
        sumNonEmpty += dice;
        ++nNonEmpty;
      }
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    TripletScore& s = out[j];
    s.meanDice = count == 0 ? nan : (sumEmpty + sumNonEmpty) / static_cast<double>(count);
    s.meanEmpty = nEmpty == 0 ? nan : sumEmpty / static_cast<double>(nEmpty);
    s.meanNonEmpty = nNonEmpty == 0 ? nan : sumNonEmpty / static_cast<double>(nNonEmpty);
    s.positives = positives;
  }
  return out;
}

}  // namespace pn::inference
