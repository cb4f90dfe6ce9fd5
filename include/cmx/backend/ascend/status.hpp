// SPDX-License-Identifier: Apache-2.0
// cmx::ascend::check_acl: an ACL runtime call's status as a cmx::Error.
#pragma once

#include "cmx/backend/ascend/toolkit.hpp"
#include "cmx/core/error.hpp"

namespace cmx::ascend {

/// Throws cmx::Error(transport) naming `call` and `what` (the cmx operation it served) unless
/// `code` is ACL_SUCCESS.
inline void check_acl(aclError code, const char* call, const char* what) {
  cmx::detail::require(code == ACL_SUCCESS, ErrorCode::transport, what, ": ", call,
                       " returned ACL error ", code);
}

}  // namespace cmx::ascend
