# A Coder-style workspace template with prebuilt workspaces, written for
# Coder's terraform provider (coder/coder). Nothing in it needs a cloud:
# `terraform_data` stands in for the VM and `local-exec` prints what a real
# provisioning step would do.
#
# Routing (from Coder's prebuilt-workspaces docs): jobs for workspaces owned
# by the `prebuilds` system user carry the tag is_prebuild=true, so a
# dedicated provisioner pool builds the prebuilds while people's builds (and
# template imports) stay untagged and go to the general pool.

terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

variable "image" {
  type        = string
  description = "Base image of the workspace."
  default     = "ubuntu:24.04"
}

data "coder_workspace" "me" {}

data "coder_workspace_owner" "me" {}

data "coder_parameter" "region" {
  name         = "region"
  display_name = "Region"
  description  = "Where the workspace runs. Fixed once the workspace exists."
  type         = "string"
  default      = "eu-west"
  mutable      = false
  order        = 1

  option {
    name  = "Europe (Frankfurt)"
    value = "eu-west"
  }
  option {
    name  = "US (Virginia)"
    value = "us-east"
  }
  option {
    name  = "Asia (Singapore)"
    value = "ap-southeast"
  }
}

data "coder_parameter" "cpus" {
  name         = "cpus"
  display_name = "CPU cores"
  description  = "Cores for the workspace; can be raised later."
  type         = "number"
  default      = 2
  mutable      = true
  order        = 2

  validation {
    min       = 1
    max       = 16
    monotonic = "increasing"
    error     = "Choose between {min} and {max} cores (got {value})."
  }
}

data "coder_parameter" "dotfiles_repo" {
  name         = "dotfiles_repo"
  display_name = "Dotfiles repository"
  description  = "An https Git URL to clone dotfiles from; empty for none."
  type         = "string"
  default      = ""
  mutable      = true
  order        = 3

  validation {
    regex = "^(https://.*)?$"
    error = "Use an https:// URL, or leave it empty."
  }
}

# The pool Coder keeps ready: three Frankfurt workspaces with 4 cores, more
# during Berlin office hours, fewer on Saturdays, each replaced after a day.
data "coder_workspace_preset" "frankfurt" {
  name    = "Frankfurt, 4 cores"
  default = true
  parameters = {
    region = "eu-west"
    cpus   = 4
  }

  prebuilds {
    instances = 3

    expiration_policy {
      ttl = 86400
    }

    scheduling {
      timezone = "Europe/Berlin"

      schedule {
        cron      = "* 8-18 * * 1-5"
        instances = 5
      }
      schedule {
        cron      = "* 8-14 * * 6"
        instances = 1
      }
    }
  }
}

data "coder_workspace_preset" "virginia" {
  name = "Virginia, 8 cores"
  parameters = {
    region = "us-east"
    cpus   = 8
  }
}

# Only prebuild jobs get the tag: for anyone else count is 0 and the block
# adds nothing (the seed docs' recipe).
data "coder_workspace_tags" "prebuilds" {
  count = data.coder_workspace_owner.me.name == "prebuilds" ? 1 : 0
  tags = {
    "is_prebuild" = "true"
  }
}

resource "coder_agent" "main" {
  arch = "amd64"
  os   = "linux"

  startup_script = <<-EOT
    echo "agent for ${data.coder_workspace.me.name} starting"
  EOT
}

resource "terraform_data" "workspace" {
  count = data.coder_workspace.me.start_count

  input = {
    owner  = data.coder_workspace_owner.me.name
    region = data.coder_parameter.region.value
    cpus   = data.coder_parameter.cpus.value
    image  = var.image
  }

  provisioner "local-exec" {
    command = <<-EOT
      echo "provisioning ${data.coder_workspace.me.name} for ${data.coder_workspace_owner.me.name}"
      echo "region ${data.coder_parameter.region.value}, ${data.coder_parameter.cpus.value} cores, image ${var.image}"
      echo "agent ${coder_agent.main.id}"
    EOT
  }
}

output "region" {
  value = data.coder_parameter.region.value
}

output "cpus" {
  value = data.coder_parameter.cpus.value
}
