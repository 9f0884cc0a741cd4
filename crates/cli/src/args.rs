//! The command tree, as `az` spells it: groups, verbs and flags (with az's short flags where it has them).
//!
//! Only the shape of the command line lives here; `commands/` carries each verb out. `docs/cli.md` is
//! generated from this tree (`cargo xtask codegen`).

// Subcommand enums mirror the command line; their size differences do not matter (built once).
#![allow(clippy::large_enum_variant)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser, Debug)]
#[command(
    name = "galleon",
    version,
    about = "A self-hosted scale-set platform: build images, publish them to a gallery, run scale sets behind a \
             load balancer, and upgrade them safely.",
    disable_help_subcommand = true,
    max_term_width = 110
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The galleon home: state, images, instances and the API socket.
    #[arg(long, global = true, env = "GALLEON_HOME", value_name = "DIR", default_value_os_t = default_home(), hide_default_value = true)]
    pub home: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Json)]
    pub output: Format,
    /// JMESPath query string, applied to the output (see http://jmespath.org/).
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,
    /// Only show errors, suppressing warnings and progress.
    #[arg(long, global = true)]
    pub only_show_errors: bool,
}

/// `~/.galleon`, or `.galleon` in the working directory when there is no HOME.
pub fn default_home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".galleon")
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane of a home: the API, state, and everything that reconciles it.
    Serve,
    /// Watch galleon work: a scale set behind a load balancer, a canary, then a rolling upgrade — with
    /// no failed request. Uses a temporary home unless --home is given; stops everything at the end.
    Demo,
    /// Manage resource groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Set defaults, such as the resource group used when -g is left out.
    Configure(ConfigureArgs),
    /// Show the home's subscription.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Manage the gallery: galleries, image definitions and image versions.
    #[command(subcommand)]
    Sig(SigCmd),
    /// Manage managed images (images outside the gallery).
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage virtual machine scale sets: instances, models, upgrades.
    #[command(subcommand)]
    Vmss(VmssCmd),
    /// Manage load balancers (`network lb …`).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Say what a home runs: control plane, data plane, instances by state.
    Status,
    /// Stop everything a home runs: instances (drained first), the data plane, the control plane.
    /// `galleon serve` afterwards brings back every instance that was running.
    Shutdown,
    /// The image store.
    #[command(subcommand)]
    Store(StoreCmd),
    /// The data plane of a home (started by `galleon serve`).
    #[command(hide = true)]
    Dataplane,
    /// The instance agent (run by the process runtime, one per instance).
    #[command(hide = true)]
    Agent {
        /// The instance's directory.
        dir: PathBuf,
    },
    /// The sample app: serves its image's page, a health endpoint that can be made to fail, and a visit
    /// counter on its data disk.
    #[command(hide = true)]
    SampleApp,
}

// ---- shared flag groups ----

#[derive(Args, Debug, Clone, Default)]
pub struct GroupArg {
    /// Name of the resource group. Configure a default with `galleon configure --defaults group=NAME`.
    #[arg(short = 'g', long = "resource-group", value_name = "NAME")]
    pub resource_group: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CreateCommon {
    /// Location; defaults to the resource group's.
    #[arg(short = 'l', long)]
    pub location: Option<String>,
    /// Space-separated tags: key[=value] [key[=value] ...].
    #[arg(long, num_args = 0..)]
    pub tags: Option<Vec<String>>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GenericUpdate {
    /// Update an object by specifying a property path and value to set, e.g. `properties.key=value`.
    #[arg(long, value_name = "PATH=VALUE", num_args = 1.., action = clap::ArgAction::Append)]
    pub set: Vec<String>,
    /// Add an object to a list: `--add PATH VALUE`, the value JSON or KEY=VALUE.
    #[arg(long, value_names = ["PATH", "VALUE"], num_args = 2, action = clap::ArgAction::Append)]
    pub add: Vec<String>,
    /// Remove a property or a list element: `--remove PATH [INDEX]`.
    #[arg(long, value_name = "PATH [INDEX]", num_args = 1..=2, action = clap::ArgAction::Append)]
    pub remove: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct NoWait {
    /// Do not wait for the long-running operation to finish.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Ids {
    /// One or more resource ids; when given, the other naming flags are not needed.
    #[arg(long, num_args = 1..)]
    pub ids: Option<Vec<String>>,
}

// ---- group ----

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a new resource group.
    Create {
        /// Name of the new resource group.
        #[arg(short = 'n', long = "name", visible_alias = "resource-group", short_alias = 'g')]
        name: String,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// List resource groups.
    List,
    /// Get a resource group.
    Show {
        #[arg(short = 'n', long = "name", visible_alias = "resource-group", short_alias = 'g')]
        name: String,
    },
    /// Check whether a resource group exists.
    Exists {
        #[arg(short = 'n', long = "name", visible_alias = "resource-group", short_alias = 'g')]
        name: String,
    },
    /// Delete a resource group with everything in it (scale sets and their instances and disks, load
    /// balancers, galleries, images). Asks first unless --yes; refused while a scale set of another group
    /// uses something in it.
    Delete {
        #[arg(short = 'n', long = "name", visible_alias = "resource-group", short_alias = 'g')]
        name: String,
        /// Do not prompt for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        #[command(flatten)]
        no_wait: NoWait,
    },
}

// ---- configure / account ----

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    /// Space-separated defaults in 'key=value' form, e.g. `group=rg`. An empty value clears a default.
    #[arg(short = 'd', long, num_args = 1.., value_name = "KEY=VALUE")]
    pub defaults: Vec<String>,
    /// List the current defaults.
    #[arg(short = 'l', long)]
    pub list_defaults: bool,
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Show the home's subscription.
    Show,
}

// ---- sig ----

#[derive(Args, Debug, Clone, Default)]
pub struct GalleryArgs {
    #[command(flatten)]
    pub group: GroupArg,
    /// Gallery name.
    #[arg(short = 'r', long = "gallery-name", value_name = "NAME")]
    pub gallery: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DefinitionArgs {
    #[command(flatten)]
    pub gallery: GalleryArgs,
    /// Gallery image definition name.
    #[arg(short = 'i', long = "gallery-image-definition", value_name = "NAME")]
    pub definition: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct VersionArgs {
    #[command(flatten)]
    pub definition: DefinitionArgs,
    /// Gallery image version, MAJOR.MINOR.PATCH (or `latest` to show what latest resolves to).
    #[arg(short = 'e', long = "gallery-image-version", value_name = "VERSION")]
    pub version: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SigCmd {
    /// Create a gallery.
    Create {
        #[command(flatten)]
        gallery: GalleryArgs,
        /// A description of the gallery.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// List galleries (of a group with -g).
    List {
        #[command(flatten)]
        group: GroupArg,
    },
    /// Show a gallery.
    Show {
        #[command(flatten)]
        gallery: GalleryArgs,
        #[command(flatten)]
        ids: Ids,
    },
    /// Delete a gallery (it must hold no image definitions).
    Delete {
        #[command(flatten)]
        gallery: GalleryArgs,
        #[command(flatten)]
        ids: Ids,
    },
    /// Manage image definitions.
    #[command(subcommand)]
    ImageDefinition(DefinitionCmd),
    /// Manage image versions.
    #[command(subcommand)]
    ImageVersion(VersionCmd),
}

#[derive(Subcommand, Debug)]
pub enum DefinitionCmd {
    /// Create an image definition.
    Create {
        #[command(flatten)]
        definition: DefinitionArgs,
        /// Image publisher.
        #[arg(short = 'p', long)]
        publisher: String,
        /// Image offer.
        #[arg(short = 'f', long)]
        offer: String,
        /// Image sku.
        #[arg(short = 's', long)]
        sku: String,
        /// The operating system type of the images.
        #[arg(long, value_parser = ["Linux", "Windows"], ignore_case = true, default_value = "Linux")]
        os_type: String,
        /// Generalized or Specialized.
        #[arg(long, value_parser = ["Generalized", "Specialized"], ignore_case = true)]
        os_state: Option<String>,
        /// V1 or V2.
        #[arg(long)]
        hyper_v_generation: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// The end of life date, e.g. 2027-12-31.
        #[arg(long)]
        end_of_life_date: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// List the image definitions of a gallery.
    List {
        #[command(flatten)]
        gallery: GalleryArgs,
    },
    /// Show an image definition.
    Show {
        #[command(flatten)]
        definition: DefinitionArgs,
        #[command(flatten)]
        ids: Ids,
    },
    /// Delete an image definition (it must hold no versions).
    Delete {
        #[command(flatten)]
        definition: DefinitionArgs,
        #[command(flatten)]
        ids: Ids,
    },
}

#[derive(Subcommand, Debug)]
pub enum VersionCmd {
    /// Publish an image version from a directory or archive, or from a managed image.
    Create {
        #[command(flatten)]
        version: VersionArgs,
        /// A directory, or a tar / tar.gz / tar.zst archive, holding the image root.
        #[arg(long, value_name = "DIR_OR_TAR", conflicts_with = "managed_image")]
        source: Option<PathBuf>,
        /// A managed image to publish: its name (in -g), its id, or RG/NAME.
        #[arg(long, value_name = "NAME_OR_ID")]
        managed_image: Option<String>,
        /// Leave this version out when `latest` is resolved.
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        exclude_from_latest: Option<bool>,
        /// The end of life date, e.g. 2027-12-31.
        #[arg(long)]
        end_of_life_date: Option<String>,
        /// The command an instance runs, relative to the image root (default: `start`).
        #[arg(long)]
        entrypoint: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// List the versions of an image definition.
    List {
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Show an image version (`-e latest` shows what latest resolves to).
    Show {
        #[command(flatten)]
        version: VersionArgs,
        #[command(flatten)]
        ids: Ids,
    },
    /// Update an image version: exclusion from latest, end of life, tags, revocation.
    Update {
        #[command(flatten)]
        version: VersionArgs,
        #[command(flatten)]
        ids: Ids,
        /// Leave this version out when `latest` is resolved.
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        exclude_from_latest: Option<bool>,
        /// The end of life date, e.g. 2027-12-31.
        #[arg(long)]
        end_of_life_date: Option<String>,
        #[command(flatten)]
        update: GenericUpdate,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Delete an image version (no scale set may use it).
    Delete {
        #[command(flatten)]
        version: VersionArgs,
        #[command(flatten)]
        ids: Ids,
        #[command(flatten)]
        no_wait: NoWait,
    },
}

// ---- image ----

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Create a managed image from a directory or archive.
    Create {
        #[command(flatten)]
        group: GroupArg,
        /// Name of the image.
        #[arg(short = 'n', long)]
        name: String,
        /// A directory, or a tar / tar.gz / tar.zst archive, holding the image root.
        #[arg(long, value_name = "DIR_OR_TAR")]
        source: PathBuf,
        /// The command an instance runs, relative to the image root (default: `start`).
        #[arg(long)]
        entrypoint: Option<String>,
        #[arg(long, value_parser = ["Linux", "Windows"], ignore_case = true)]
        os_type: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// List managed images (of a group with -g).
    List {
        #[command(flatten)]
        group: GroupArg,
    },
    /// Show a managed image.
    Show {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: Option<String>,
        #[command(flatten)]
        ids: Ids,
    },
    /// Delete a managed image.
    Delete {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: Option<String>,
        #[command(flatten)]
        ids: Ids,
    },
    /// Build an image from a Packer-style JSON template (`"type": "galleon"` builder; shell and file
    /// provisioners), and publish it as a managed image and/or a gallery version.
    Build {
        /// The template file.
        #[arg(long)]
        template: PathBuf,
        /// A template variable, NAME=VALUE (Packer's `-var` works too); repeatable.
        #[arg(long, value_name = "NAME=VALUE")]
        var: Vec<String>,
        /// A JSON file of variables (Packer's `-var-file` works too); repeatable.
        #[arg(long, value_name = "FILE")]
        var_file: Vec<PathBuf>,
        /// What to do with the working root of a failed build: cleanup (default) or abort (keep it).
        #[arg(long, value_parser = ["cleanup", "abort"])]
        on_error: Option<String>,
        /// The group of a managed image output whose template names none.
        #[command(flatten)]
        group: GroupArg,
        #[command(flatten)]
        no_wait: NoWait,
    },
}

// ---- vmss ----

#[derive(Args, Debug, Clone, Default)]
pub struct VmssName {
    #[command(flatten)]
    pub group: GroupArg,
    /// Scale set name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct InstanceIdsArg {
    /// Space-separated instance ids, or '*' for all (the default when left out).
    #[arg(long, num_args = 1.., value_name = "ID")]
    pub instance_ids: Option<Vec<String>>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RollingArgs {
    /// Rolling upgrade: the most instances upgraded at once, in percent (default 20).
    #[arg(long, value_name = "PERCENT")]
    pub max_batch_instance_percent: Option<u32>,
    /// Rolling upgrade: the most unhealthy instances before a batch, in percent (default 20).
    #[arg(long, value_name = "PERCENT")]
    pub max_unhealthy_instance_percent: Option<u32>,
    /// Rolling upgrade: the most upgraded instances allowed unhealthy, in percent (default 20).
    #[arg(long, value_name = "PERCENT")]
    pub max_unhealthy_upgraded_instance_percent: Option<u32>,
    /// Rolling upgrade: wait between batches, ISO 8601 (default PT0S).
    #[arg(long, value_name = "DURATION")]
    pub pause_time_between_batches: Option<String>,
    /// Rolling upgrade: upgrade unhealthy instances first.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub prioritize_unhealthy_instances: Option<bool>,
    /// Rolling upgrade: roll failed instances back when the policy is breached.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub rollback_failed_instances_on_policy_breach: Option<bool>,
    /// Rolling upgrade: create new instances first, delete old ones after (their data disks go with them).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub max_surge: Option<bool>,
    /// Upgrade instances when a newer image version is published (the model must name a definition).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub enable_auto_os_upgrade: Option<bool>,
}

#[derive(Subcommand, Debug)]
pub enum VmssCmd {
    /// Create a scale set.
    Create {
        #[command(flatten)]
        vmss: VmssName,
        /// The image: a gallery version or definition (G/D/1.0.0, G/D = latest), a managed image name, or an id.
        #[arg(long)]
        image: String,
        /// How many instances.
        #[arg(long, default_value_t = 2)]
        instance_count: u32,
        /// What a model change does to running instances (default Manual).
        #[arg(long, value_parser = ["Manual", "Automatic", "Rolling"], ignore_case = true)]
        upgrade_policy_mode: Option<String>,
        /// Sizes of data disks in GB, one per disk (lun 0, 1, …).
        #[arg(long, num_args = 1.., value_name = "GB")]
        data_disk_sizes_gb: Vec<u32>,
        /// A load balancer to put the instances behind (created if it does not exist).
        #[arg(long)]
        lb: Option<String>,
        /// The backend port of the load balancer's inbound NAT pool (default 22).
        #[arg(long, default_value_t = 22)]
        backend_port: u16,
        /// A file whose content each instance finds at $GALLEON_CUSTOM_DATA.
        #[arg(long, value_name = "FILE")]
        custom_data: Option<PathBuf>,
        /// The VM size, recorded (the process runtime does not enforce it).
        #[arg(long)]
        vm_sku: Option<String>,
        /// Default, OldestVM or NewestVM.
        #[arg(long, value_parser = ["Default", "OldestVM", "NewestVM"])]
        scale_in_policy: Option<String>,
        /// The probe whose health gates upgrades (a probe id, or a probe name of --lb).
        #[arg(long)]
        health_probe: Option<String>,
        /// Accepted for az compatibility and recorded.
        #[arg(long)]
        admin_username: Option<String>,
        /// Accepted for az compatibility and recorded.
        #[arg(long)]
        computer_name_prefix: Option<String>,
        #[command(flatten)]
        rolling: RollingArgs,
        #[command(flatten)]
        common: CreateCommon,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// List scale sets (of a group with -g).
    List {
        #[command(flatten)]
        group: GroupArg,
    },
    /// Show a scale set.
    Show {
        #[command(flatten)]
        vmss: VmssName,
        /// Show one instance instead.
        #[arg(long)]
        instance_id: Option<String>,
    },
    /// Delete a scale set and its instances.
    Delete {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// List a scale set's instances.
    ListInstances {
        #[command(flatten)]
        vmss: VmssName,
    },
    /// The instance view of one instance (`--instance-id`), or of all (`*`, the default).
    GetInstanceView {
        #[command(flatten)]
        vmss: VmssName,
        #[arg(long)]
        instance_id: Option<String>,
    },
    /// Update the scale set's model (`--set`, `--add`, `--remove`), or one instance's protection.
    Update {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        update: GenericUpdate,
        /// The instance whose protection to change.
        #[arg(long)]
        instance_id: Option<String>,
        /// Protect the instance from scale-in.
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        protect_from_scale_in: Option<bool>,
        /// Protect the instance from scale-set actions (upgrades, reimage of all).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        protect_from_scale_set_actions: Option<bool>,
        #[command(flatten)]
        rolling: RollingArgs,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Bring instances to the scale set's latest model.
    UpdateInstances {
        #[command(flatten)]
        vmss: VmssName,
        /// Space-separated instance ids, or '*' for all.
        #[arg(long, num_args = 1.., required = true, value_name = "ID")]
        instance_ids: Vec<String>,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Give instances a fresh OS disk from their image (data disks are kept).
    Reimage {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        ids: InstanceIdsArg,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Restart instances.
    Restart {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        ids: InstanceIdsArg,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Stop instances (power off; disks and addresses are kept).
    Stop {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        ids: InstanceIdsArg,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Start stopped or deallocated instances.
    Start {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        ids: InstanceIdsArg,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Stop instances and release their addresses.
    Deallocate {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        ids: InstanceIdsArg,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Delete instances (their data disks go with them).
    DeleteInstances {
        #[command(flatten)]
        vmss: VmssName,
        #[arg(long, num_args = 1.., required = true, value_name = "ID")]
        instance_ids: Vec<String>,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Change the number of instances.
    Scale {
        #[command(flatten)]
        vmss: VmssName,
        /// The new number of instances.
        #[arg(long)]
        new_capacity: u32,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Manage the scale set's extensions (CustomScript, ApplicationHealthLinux).
    #[command(subcommand)]
    Extension(ExtensionCmd),
    /// Run a command in an instance.
    #[command(subcommand)]
    RunCommand(RunCommandCmd),
    /// Rolling upgrades: start an OS image upgrade, cancel one, show the latest.
    #[command(subcommand)]
    RollingUpgrade(RollingUpgradeCmd),
    /// Past OS image upgrades (automatic or started), newest first.
    GetOsUpgradeHistory {
        #[command(flatten)]
        vmss: VmssName,
    },
    /// The address and port of each instance's inbound NAT rule, as `az` shows them.
    ListInstanceConnectionInfo {
        #[command(flatten)]
        vmss: VmssName,
    },
    /// Show an instance's boot diagnostics: the output of its entrypoint.
    GetBootLog {
        #[command(flatten)]
        vmss: VmssName,
        #[arg(long)]
        instance_id: String,
        /// Keep printing what the instance writes.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each stream.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RollingUpgradeCmd {
    /// Bring every instance to the model's image resolved now, in health-gated batches.
    Start {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Cancel the rolling upgrade in progress: no new batch starts.
    Cancel {
        #[command(flatten)]
        vmss: VmssName,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// The status of the latest rolling upgrade.
    GetLatest {
        #[command(flatten)]
        vmss: VmssName,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunCommandCmd {
    /// Run a shell script in an instance's environment (its GALLEON_* variables, its OS disk as working
    /// directory) and show what it printed.
    Invoke {
        #[command(flatten)]
        vmss: VmssName,
        #[arg(long)]
        instance_id: String,
        /// RunShellScript.
        #[arg(long)]
        command_id: String,
        /// The script's lines.
        #[arg(long, num_args = 1..)]
        scripts: Vec<String>,
        /// NAME=VALUE pairs the script gets as environment variables.
        #[arg(long, num_args = 1..)]
        parameters: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Free the blobs and manifests nothing references any more; say what was freed.
    Gc,
}

#[derive(Args, Debug, Clone, Default)]
pub struct VmssNameArg {
    #[command(flatten)]
    pub group: GroupArg,
    /// Scale set name.
    #[arg(long = "vmss-name", value_name = "NAME")]
    pub vmss_name: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ExtensionCmd {
    /// Add or change an extension (a model change: instances get it when upgraded).
    Set {
        #[command(flatten)]
        vmss: VmssNameArg,
        /// Extension name, e.g. CustomScript.
        #[arg(short = 'n', long)]
        name: String,
        /// e.g. Microsoft.Azure.Extensions.
        #[arg(long)]
        publisher: String,
        /// e.g. 2.0.
        #[arg(long)]
        version: Option<String>,
        /// JSON settings, or @file.json.
        #[arg(long)]
        settings: Option<String>,
        /// JSON protected settings, or @file.json: kept secret, never shown.
        #[arg(long)]
        protected_settings: Option<String>,
        /// Change this to run the extension again with unchanged settings.
        #[arg(long)]
        force_update: bool,
        /// The extension's type when it differs from its name.
        #[arg(long)]
        extension_instance_name: Option<String>,
        #[command(flatten)]
        no_wait: NoWait,
    },
    /// Show an extension.
    Show {
        #[command(flatten)]
        vmss: VmssNameArg,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// List extensions.
    List {
        #[command(flatten)]
        vmss: VmssNameArg,
    },
    /// Delete an extension (a model change).
    Delete {
        #[command(flatten)]
        vmss: VmssNameArg,
        #[arg(short = 'n', long)]
        name: String,
        #[command(flatten)]
        no_wait: NoWait,
    },
}

// ---- network lb ----

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Load balancers.
    #[command(subcommand)]
    Lb(LbCmd),
}

#[derive(Args, Debug, Clone, Default)]
pub struct LbName {
    #[command(flatten)]
    pub group: GroupArg,
    /// The load balancer.
    #[arg(long = "lb-name", value_name = "NAME")]
    pub lb: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum LbCmd {
    /// Create a load balancer (its own frontend address on this machine).
    Create {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: String,
        /// The backend pool to create (default `{name}bepool`).
        #[arg(long)]
        backend_pool_name: Option<String>,
        /// The frontend's name (default `LoadBalancerFrontEnd`).
        #[arg(long)]
        frontend_ip_name: Option<String>,
        #[command(flatten)]
        common: CreateCommon,
    },
    /// List load balancers (of a group with -g).
    List {
        #[command(flatten)]
        group: GroupArg,
    },
    /// Show a load balancer.
    Show {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Delete a load balancer (no scale set may use it).
    Delete {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Update a load balancer's document (`--set`, `--add`, `--remove`).
    Update {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: String,
        #[command(flatten)]
        update: GenericUpdate,
    },
    /// Requests, errors, latency and connections per rule and backend.
    ShowMetrics {
        #[command(flatten)]
        group: GroupArg,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Health probes.
    #[command(subcommand)]
    Probe(ProbeCmd),
    /// Load-balancing rules.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Backend address pools.
    #[command(subcommand)]
    AddressPool(ChildCmd),
    /// Inbound NAT pools (one frontend port per instance of the scale sets in them).
    #[command(subcommand)]
    InboundNatPool(NatPoolCmd),
    /// Inbound NAT rules (`{pool}.{instanceId}`, made by NAT pools).
    #[command(subcommand)]
    InboundNatRule(NatRuleCmd),
}

#[derive(Subcommand, Debug)]
pub enum ProbeCmd {
    /// Create a probe.
    Create {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
        /// Http, Https (the same over TLS, the certificate not verified) or Tcp.
        #[arg(long, value_parser = ["Http", "Https", "Tcp"], ignore_case = true)]
        protocol: String,
        #[arg(long)]
        port: u16,
        /// The request path (Http, Https).
        #[arg(long)]
        path: Option<String>,
        /// Seconds between probes (galleon accepts from 1; default 15).
        #[arg(long)]
        interval: Option<u32>,
        /// Consecutive results that flip health (numberOfProbes; default 2).
        #[arg(long)]
        threshold: Option<u32>,
        /// probeThreshold, when it should differ from numberOfProbes.
        #[arg(long)]
        probe_threshold: Option<u32>,
    },
    /// Change a probe.
    Update {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
        #[arg(long, value_parser = ["Http", "Https", "Tcp"], ignore_case = true)]
        protocol: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        interval: Option<u32>,
        #[arg(long)]
        threshold: Option<u32>,
        #[arg(long)]
        probe_threshold: Option<u32>,
    },
    /// List probes.
    List {
        #[command(flatten)]
        lb: LbName,
    },
    /// Show a probe.
    Show {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Delete a probe (no rule or scale set may use it).
    Delete {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct RuleSpec {
    /// Tcp (L4: connections) or Http (L7: requests, keep-alive to backends).
    #[arg(long, value_parser = ["Tcp", "Http"], ignore_case = true)]
    pub protocol: Option<String>,
    #[arg(long)]
    pub frontend_port: Option<u16>,
    #[arg(long)]
    pub backend_port: Option<u16>,
    #[arg(long)]
    pub backend_pool_name: Option<String>,
    /// The probe whose health gates the backends.
    #[arg(long)]
    pub probe: Option<String>,
    /// Default, SourceIP or SourceIPProtocol.
    #[arg(long, value_parser = ["Default", "SourceIP", "SourceIPProtocol"])]
    pub load_distribution: Option<String>,
    /// Idle timeout in minutes (4-100).
    #[arg(long)]
    pub idle_timeout: Option<u32>,
    /// How long a leaving instance's requests get to finish, in seconds (default 30).
    #[arg(long)]
    pub drain_timeout: Option<u32>,
    #[arg(long)]
    pub frontend_ip_name: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RuleCmd {
    /// Create a load-balancing rule.
    Create {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
        #[command(flatten)]
        spec: RuleSpec,
    },
    /// Change a rule.
    Update {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
        #[command(flatten)]
        spec: RuleSpec,
    },
    /// List rules.
    List {
        #[command(flatten)]
        lb: LbName,
    },
    /// Show a rule.
    Show {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Delete a rule.
    Delete {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChildCmd {
    /// Create one.
    Create {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// List them.
    List {
        #[command(flatten)]
        lb: LbName,
    },
    /// Show one.
    Show {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Delete one (no scale set may use it).
    Delete {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NatPoolCmd {
    /// Create an inbound NAT pool.
    Create {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
        #[arg(long, default_value = "Tcp")]
        protocol: String,
        #[arg(long)]
        frontend_port_range_start: u16,
        #[arg(long)]
        frontend_port_range_end: u16,
        #[arg(long)]
        backend_port: u16,
        #[arg(long)]
        frontend_ip_name: Option<String>,
    },
    /// List inbound NAT pools.
    List {
        #[command(flatten)]
        lb: LbName,
    },
    /// Show an inbound NAT pool.
    Show {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
    /// Delete an inbound NAT pool (no scale set may use it).
    Delete {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NatRuleCmd {
    /// List inbound NAT rules.
    List {
        #[command(flatten)]
        lb: LbName,
    },
    /// Show an inbound NAT rule (`{pool}.{instanceId}`).
    Show {
        #[command(flatten)]
        lb: LbName,
        #[arg(short = 'n', long)]
        name: String,
    },
}
