# A small workspace template that runs offline with Terraform's built-ins
# only: `terraform_data` stands in for a VM or pod, and `local-exec` prints
# what a real provisioning step would. Used by the README's demo and tests.

variable "region" {
  type        = string
  description = "Where the workspace runs."
  default     = "eu-west-1"
}

variable "size" {
  type        = number
  description = "Disk size in GiB."
  default     = 10
}

variable "greeting" {
  type        = string
  description = "Printed by the provisioning step."
  default     = "hello from provisionerd"
}

locals {
  workspace = "workspace in ${var.region}"
}

resource "terraform_data" "workspace" {
  input = {
    region = var.region
    size   = var.size
  }

  # CODER_WORKSPACE_* variables are set by the daemon for every build
  # (Coder's environment contract).
  provisioner "local-exec" {
    command = <<-EOT
      echo "provisioning ${local.workspace} with ${var.size} GiB"
      echo "workspace: $CODER_WORKSPACE_NAME owner: $CODER_WORKSPACE_OWNER transition: $CODER_WORKSPACE_TRANSITION"
      for step in network disk agent; do echo "step $step done"; done
      echo "${var.greeting}"
    EOT
  }
}

output "region" {
  value = terraform_data.workspace.output.region
}

output "disk_gib" {
  value = terraform_data.workspace.output.size
}

output "id" {
  value = terraform_data.workspace.id
}
