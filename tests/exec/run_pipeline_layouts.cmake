# `moesys train --runtime cpu`: pipeline layouts compute the same model. The same data-parallel size (2) with 1, 2
# and 4 pipeline stages (uneven stages, interleaved virtual stages, full recompute, the dense policies that
# pipelines allow) must give the same loss at every step: the stages start from the same weights, exchange
# activations and gradients point to point in (interleaved) 1F1B order, and reduce their gradients over their own
# data-parallel ranks.
# The paper's GPT-MoE ties its output layer to the token table: the first and the last stage hold a copy each and
# sum their gradients (grad_sync.cpp), so the copies stay equal and the losses match one stage's.
function(expect_same_losses_over_layouts model)
  set(reference "")
  foreach(layout IN LISTS ARGN)
    string(REPLACE "|" ";" parts "${layout}")
    list(GET parts 0 ranks)
    list(GET parts 1 parallel)
    list(GET parts 2 dense)
    execute_process(COMMAND ${MOESYS} train --runtime cpu --ranks ${ranks} --steps 3 --model ${model}
                            --parallel ${parallel} --policy "{\"dense\": \"${dense}\"}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${layout}: exit ${rc}\n${out}\n${err}")
    endif()
    string(REGEX MATCH "loss per step[ 0-9.]+" losses "${out}")
    if(losses STREQUAL "")
      message(FATAL_ERROR "${layout}: no loss line in\n${out}")
    endif()
    message(STATUS "${layout}: ${losses}")
    if(reference STREQUAL "")
      set(reference "${losses}")
    elseif(NOT losses STREQUAL reference)
      message(FATAL_ERROR "${model} ${layout} gave '${losses}', one stage '${reference}'")
    endif()
  endforeach()
  set(last_reference "${reference}" PARENT_SCOPE)
endfunction()

expect_same_losses_over_layouts(
  "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 5, \"experts\": 4, \"top_k\": 4, \"global_batch\": 32}"
  "2|{}|ddp"
  "4|{\"pp\": 2, \"stage_layers\": [2, 3]}|ddp"
  "4|{\"pp\": 2, \"stage_layers\": [2, 3], \"recompute\": \"full\"}|distributed"
  "8|{\"pp\": 4, \"stage_layers\": [1, 1, 2, 1]}|zero2"
  "4|{\"pp\": 2, \"vpp\": 2, \"stage_layers\": [1, 1, 2, 1]}|distributed"
  "4|{\"pp\": 2, \"vpp\": 2, \"stage_layers\": [2, 1, 1, 1], \"recompute\": \"full\"}|ddp")
set(without_mtp "${last_reference}")
# DeepSeek-V3's multi-token prediction module (policies/training/mtp.cpp) on the last stage: it looks up the next
# tokens in the last stage's copy of the token table, so its gradient reaches the first stage's copy through the
# embedding group; every layout (pipelines, chunks without layers as in Megatron's layouts, whose last chunk may
# hold the module and the logits alone, tensor and context parallelism, each dense policy) trains the same model.
expect_same_losses_over_layouts(
  "{\"preset\": \"deepseek-v3\", \"layers\": 5, \"experts\": 4, \"top_k\": 4, \"global_batch\": 32}"
  "2|{}|ddp"
  "4|{\"pp\": 2, \"stage_layers\": [2, 3], \"recompute\": \"full\"}|distributed"
  "8|{\"pp\": 4, \"stage_layers\": [1, 1, 2, 1]}|distributed"
  "4|{\"pp\": 2, \"vpp\": 2, \"stage_layers\": [1, 1, 2, 1]}|distributed"
  "4|{\"pp\": 2, \"vpp\": 2, \"stage_layers\": [3, 0, 2, 0]}|ddp"
  "4|{\"tp\": 2}|ddp"
  "4|{\"cp\": 2}|ddp")
# The module trains the shared layers: from the second step the main loss differs from the same model's without it.
string(REGEX MATCHALL "[0-9]+\\.[0-9]+" with_values "${last_reference}")
string(REGEX MATCHALL "[0-9]+\\.[0-9]+" without_values "${without_mtp}")
list(GET with_values 0 first_with)
list(GET without_values 0 first_without)
list(GET with_values 1 second_with)
list(GET without_values 1 second_without)
if(NOT first_with STREQUAL first_without OR second_with STREQUAL second_without)
  message(FATAL_ERROR "with the MTP module '${last_reference}', without '${without_mtp}': expected the same first "
                      "loss (one forward of the same weights) and a different second")
endif()
expect_same_losses_over_layouts(
  "{\"preset\": \"gpt-moe\", \"experts\": 4, \"hidden\": 64, \"layers\": 4, \"global_batch\": 16, \"micro_batch\": 2, \"seq_len\": 32, \"vocab\": 256}"
  "2|{}|ddp"
  "4|{\"pp\": 2}|ddp"
  "4|{\"pp\": 2, \"vpp\": 2}|distributed")
