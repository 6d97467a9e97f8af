# A workspace as a pod in the cluster the daemons run in: a home volume that
# outlives stops, and a pod (only while the workspace is started) running
# Coder's agent. The Kubernetes provider is configured by nothing but the
# daemon pod's service account: with no kubeconfig it uses its in-cluster
# config (the mounted token and KUBERNETES_SERVICE_HOST). Deploy the pool of
# examples/kubernetes/kubernetes-pool.yaml, whose account may manage pods and
# PersistentVolumeClaims in var.namespace and nowhere else.

terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
    kubernetes = {
      source = "hashicorp/kubernetes"
    }
  }
}

provider "kubernetes" {}

variable "namespace" {
  type        = string
  description = "The namespace of the workspaces (the pool's serviceAccount.workspaceNamespace)."
  default     = "coder-workspaces"
}

variable "image" {
  type        = string
  description = "The workspace container's image."
  default     = "codercom/enterprise-base:ubuntu"
}

data "coder_workspace" "me" {}

data "coder_workspace_owner" "me" {}

data "coder_parameter" "cpu" {
  name         = "cpu"
  display_name = "CPU cores"
  description  = "Cores the workspace may use."
  type         = "number"
  default      = 2
  mutable      = true
  order        = 1

  option {
    name  = "2 cores"
    value = 2
  }
  option {
    name  = "4 cores"
    value = 4
  }
  option {
    name  = "8 cores"
    value = 8
  }
}

data "coder_parameter" "home_disk_gib" {
  name         = "home_disk_gib"
  display_name = "Home disk (GiB)"
  description  = "Size of the home volume; it can only grow."
  type         = "number"
  default      = 10
  mutable      = true
  order        = 2

  validation {
    min       = 1
    max       = 200
    monotonic = "increasing"
    error     = "Choose between {min} and {max} GiB (got {value})."
  }
}

# Every job of this template (its import and every build) goes to the pool
# whose key has platform=kubernetes: only it holds the rights below.
data "coder_workspace_tags" "kubernetes" {
  tags = {
    "platform" = "kubernetes"
  }
}

# The PVC and the pod carry the same labels.
locals {
  labels = {
    "app.kubernetes.io/name"     = "coder-workspace"
    "app.kubernetes.io/instance" = "coder-${data.coder_workspace.me.id}"
    "com.coder.workspace.id"     = data.coder_workspace.me.id
    "com.coder.owner.name"       = data.coder_workspace_owner.me.name
  }
}

resource "coder_agent" "main" {
  arch = "amd64"
  os   = "linux"

  startup_script = <<-EOT
    echo "workspace ${data.coder_workspace.me.name} of ${data.coder_workspace_owner.me.name} is up"
  EOT
}

# Kept while the workspace is stopped; removed with the workspace.
resource "kubernetes_persistent_volume_claim_v1" "home" {
  metadata {
    name      = "coder-${data.coder_workspace.me.id}-home"
    namespace = var.namespace
    labels    = local.labels
  }

  # A WaitForFirstConsumer storage class binds the claim only once the pod
  # is scheduled, so waiting for it here would never end.
  wait_until_bound = false

  spec {
    access_modes = ["ReadWriteOnce"]
    resources {
      requests = {
        storage = "${data.coder_parameter.home_disk_gib.value}Gi"
      }
    }
  }
}

resource "kubernetes_pod_v1" "workspace" {
  count = data.coder_workspace.me.start_count

  metadata {
    name      = "coder-${data.coder_workspace.me.id}"
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    # The workspace itself gets no Kubernetes credentials, whatever the
    # namespace's default account may do.
    automount_service_account_token = false

    security_context {
      run_as_user  = 1000
      run_as_group = 1000
      fs_group     = 1000
    }

    container {
      name              = "dev"
      image             = var.image
      image_pull_policy = "IfNotPresent"
      command           = ["sh", "-c", coder_agent.main.init_script]

      env {
        name  = "CODER_AGENT_TOKEN"
        value = coder_agent.main.token
      }

      resources {
        requests = {
          cpu    = "${data.coder_parameter.cpu.value / 4}"
          memory = "2Gi"
        }
        limits = {
          cpu    = data.coder_parameter.cpu.value
          memory = "${data.coder_parameter.cpu.value * 2}Gi"
        }
      }

      volume_mount {
        name       = "home"
        mount_path = "/home/coder"
      }
    }

    volume {
      name = "home"
      persistent_volume_claim {
        claim_name = kubernetes_persistent_volume_claim_v1.home.metadata[0].name
      }
    }
  }
}

output "pod" {
  value = try(kubernetes_pod_v1.workspace[0].metadata[0].name, "")
}
