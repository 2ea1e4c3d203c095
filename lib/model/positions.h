// Position ids of a materium model (docs/materium.md, "Positions"): the K condition positions
// take 0..K-1, token j takes K + j ("standard"), or, with rope_mode "blockwise", materium's
// build_blockwise_position_ids: strictly between a row's first [ATOMS] (at a) and its first
// [LATTICE] (or the end while none has come), token j takes K + (a + 1) + (j - a - 1) mod
// atom_block_size. Token j's id depends on tokens 0..j only, so a decoder that carries
// BlockwiseState per row gets the ids of a full forward of the prefix.
// Shape letters: B batch, T new tokens.
#pragma once

#include <cstdint>

namespace lm {

struct ModelConfig;

// What a row's tokens so far say about its block-wise span.
struct BlockwiseState {
  int64_t atoms_at = -1;      // token index of the row's first [ATOMS]; -1 while none
  bool lattice_seen = false;  // its first [LATTICE] has come (after [ATOMS]): the span is closed
};

// pos [B, T] of tokens [B, T], whose first is token index `first` of its row (0 in a full
// forward; the tokens a cache already holds otherwise), after K condition positions.
// Standard: K + first + t. Block-wise: the rule above, reading and advancing state [B] (may be
// null when first == 0: a fresh state per row). A [LATTICE] before any [ATOMS] of its row is a
// Data error "row b: [LATTICE] (token id) at token j comes before any [ATOMS] (token id)"
// (materium raises there too); state is then left as it was.
void token_positions(int64_t* pos, const int32_t* tokens, int64_t B, int64_t T, int64_t K, int64_t first,
                     const ModelConfig& cfg, BlockwiseState* state);

}  // namespace lm
