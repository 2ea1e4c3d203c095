#include "model/positions.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "model/config.h"

namespace lm {

void token_positions(int64_t* pos, const int32_t* tokens, int64_t B, int64_t T, int64_t K, int64_t first,
                     const ModelConfig& cfg, BlockwiseState* state) {
  if (cfg.rope_mode != RopeMode::Blockwise) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) pos[b * T + t] = K + first + t;
    return;
  }
  if (!state && first != 0) fail(ErrorKind::Runtime, "internal: block-wise positions past token 0 need the rows' state");
  const int64_t atoms = cfg.atoms_token_id, lattice = cfg.lattice_token_id, bs = cfg.atom_block_size;
  std::vector<BlockwiseState> next(static_cast<size_t>(B));
  if (state) next.assign(state, state + B);
  for (int64_t b = 0; b < B; ++b) {
    BlockwiseState& s = next[static_cast<size_t>(b)];
    for (int64_t t = 0; t < T; ++t) {
      const int64_t j = first + t, tok = tokens[b * T + t];
      int64_t id = K + j;
      if (s.atoms_at < 0) {
        if (tok == atoms) {
          s.atoms_at = j;
        } else if (tok == lattice) {
          fail_data(cat("row ", b, ": [LATTICE] (token ", lattice, ") at token ", j, " comes before any [ATOMS] (token ",
                        atoms, ")"));
        }
      } else if (!s.lattice_seen) {
        if (tok == lattice)
          s.lattice_seen = true;  // [LATTICE] itself keeps its standard id; the span is closed
        else
          id = K + s.atoms_at + 1 + (j - s.atoms_at - 1) % bs;
      }
      pos[b * T + t] = id;
    }
  }
  if (state) std::copy(next.begin(), next.end(), state);
}

}  // namespace lm
