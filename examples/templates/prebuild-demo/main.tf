# The template of `scripts/demo.sh --prebuilds`: one preset with a pool of
# one prebuild, routed to the prebuild pool by the seed's conditional
# `coder_workspace_tags`. Its "VM" takes a few seconds to provision (a
# local-exec sleep), so a claim, which only hands the ready workspace to its
# new owner, visibly beats a fresh build.

terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

data "coder_workspace" "me" {}

data "coder_workspace_owner" "me" {}

data "coder_workspace_preset" "ready" {
  name    = "ready"
  default = true
  prebuilds {
    instances = 1
  }
}

# Only prebuild jobs get the tag (for anyone else count is 0).
data "coder_workspace_tags" "prebuilds" {
  count = data.coder_workspace_owner.me.name == "prebuilds" ? 1 : 0
  tags = {
    "is_prebuild" = "true"
  }
}

# Does not depend on the owner, so a claim build keeps it: the slow part
# runs once, when the prebuild is created.
resource "terraform_data" "vm" {
  provisioner "local-exec" {
    command = "echo provisioning the VM; sleep 5; echo VM ready"
  }
}

# Depends on the owner, so the claim build replaces it: what a real template
# does on claim (personalise the workspace), and cheap.
resource "terraform_data" "home" {
  triggers_replace = [data.coder_workspace_owner.me.name]
  provisioner "local-exec" {
    command = "echo \"home directory for $CODER_WORKSPACE_OWNER, claim=$CODER_WORKSPACE_IS_PREBUILD_CLAIM\""
  }
}

output "owner" {
  value = data.coder_workspace_owner.me.name
}

output "vm_id" {
  value = terraform_data.vm.id
}
