# `moesys train --runtime cpu`: context parallelism computes the same model. Each pair runs the same data-parallel
# replicas (so the same micro-batches) without and with every sequence cut into contiguous chunks over a
# context-parallel group, and the losses must agree at every step within float rounding: each chunk's queries attend
# over the keys and values gathered from the group up to the chunk's end (rotary positions offset by the chunk),
# the keys' and values' gradients are reduce-scattered back to their chunks, and the dense weights' gradients are
# summed over the chunks as over replicas. GQA, MLA with its shared rotary key, tensor-parallel sequence shards
# inside the chunks, two pipeline stages, and plain SGD (whose update is the gradient itself, so a gradient summed
# twice fails it). QK norms run under SGD only: AdamW turns the rounding of their gains' near-zero gradients into
# updates of a whole step, which can move the loss by more than 2e-5 after two steps.
include(${CMAKE_CURRENT_LIST_DIR}/cpu_losses.cmake)

set(qwen "{\"preset\": \"qwen3-235b-a22b\", \"layers\": 2, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16, \"attention\": {\"kind\": \"gqa\", \"kv_heads\": 2, \"head_dim\": 64, \"qk_norm\": false}}")
set(qwen_sgd "{\"preset\": \"qwen3-235b-a22b\", \"layers\": 2, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16, \"optimizer\": \"sgd\", \"attention\": {\"kind\": \"gqa\", \"kv_heads\": 2, \"head_dim\": 64, \"qk_norm\": true}}")
set(deepseek "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 3, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16}")
set(deepseek_sgd "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 3, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16, \"optimizer\": \"sgd\"}")
set(sgd_config "${CMAKE_CURRENT_BINARY_DIR}/context-parallel-sgd.json")
file(WRITE "${sgd_config}" "{\"model\": {\"preset\": \"gpt-moe\"}, \"learning_rate\": 0.5}")
set(policy "{\"dense\": \"ddp\", \"gate\": \"dropless\", \"dispatch\": \"counts\"}")
# name | model | reference ranks | reference parallel | ranks | context-parallel layout
set(pairs "gqa|qwen|2|{}|4|{\"cp\": 2}"
          "mla|deepseek|2|{}|4|{\"cp\": 2}"
          "tensor-parallel shards inside the chunks|deepseek|2|{\"tp\": 2}|4|{\"tp\": 2, \"cp\": 2}"
          "two pipeline stages|deepseek|2|{\"pp\": 2, \"stage_layers\": [1, 2]}|4|{\"pp\": 2, \"stage_layers\": [1, 2], \"cp\": 2}"
          "plain sgd, mla|deepseek_sgd|2|{}|4|{\"cp\": 2}"
          "plain sgd, qk norms, four chunks|qwen_sgd|1|{}|4|{\"ep\": 1, \"cp\": 4}")

foreach(pair IN LISTS pairs)
  string(REPLACE "|" ";" parts "${pair}")
  list(GET parts 0 name)
  list(GET parts 1 model_name)
  list(GET parts 2 ref_ranks)
  list(GET parts 3 ref_parallel)
  list(GET parts 4 ranks)
  list(GET parts 5 parallel)
  set(model "${${model_name}}")
  set(extra "")
  if(model_name MATCHES "sgd")
    set(extra --config "${sgd_config}")
  endif()
  cpu_losses(${ref_ranks} 3 "${model}" "${ref_parallel}" "${policy}" reference ${extra})
  cpu_losses(${ranks} 3 "${model}" "${parallel}" "${policy}" chunked ${extra})
  message(STATUS "${name}: ${reference} | ${chunked}")
  expect_same_losses("${name} (context parallelism)" "${reference}" "${chunked}")
endforeach()
