"""Properties of deploy/lakeworker.yaml that a security review asked for, checked on the
template as CloudFormation would resolve it for a given set of parameters.

Run by `make lint-deploy` (in the pinned lint venv: cfn-lint reads the template, PyYAML
reads the collector's config). `render` resolves the intrinsic functions the template
uses (Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Join, Fn::Split, Fn::Select, conditions) with
placeholders for what only a deployment knows (`{TaskRole.Arn}`); `allows` evaluates a
resource policy the way IAM does for the condition operators the template uses, so the
tests ask "may this principal send?" instead of comparing YAML.
"""

import json
import pathlib
import re
import unittest

import yaml
from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "lakeworker.yaml"
METRICS_RS = ROOT / "src" / "metrics.rs"
EVENTS_RS = ROOT / "src" / "worker" / "events.rs"

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "lakeworker",
}
REQUIRED = {
    "ImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lakeworker:1.0.0",
    "VpcId": "vpc-0123",
    "SubnetIds": "subnet-0aaa,subnet-0bbb",
    "DatasetsToml": "",
}
LANDING = f"lakeworker-landing-{ACCOUNT}-{REGION}"
LAKE = f"lakeworker-lake-{ACCOUNT}-{REGION}"
NO_VALUE = object()


def load():
    template, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return template


class Renderer:
    """The template with conditions decided and intrinsic functions resolved."""

    def __init__(self, template, **overrides):
        self.template = template
        self.params = {}
        for name, spec in template["Parameters"].items():
            value = {**REQUIRED, **overrides}.get(name, spec.get("Default"))
            assert value is not None, f"parameter {name} needs a value"
            if spec["Type"].startswith("List<") or spec["Type"] == "CommaDelimitedList":
                value = value.split(",") if isinstance(value, str) else list(value)
                value = [v.strip() for v in value]  # as CloudFormation does
            self.params[name] = value
        self.conditions = {}
        for name in template["Conditions"]:
            self.condition(name)
        self.resources = {
            name: self.value(resource)
            for name, resource in template["Resources"].items()
            if "Condition" not in resource or self.conditions[resource["Condition"]]
        }

    def broken_rules(self):
        """The AssertDescription of every template rule these parameters break."""
        broken = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            broken += [a["AssertDescription"] for a in rule["Assertions"]
                       if not self.value(a["Assert"])]
        return broken

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            return self.params[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        return "{" + name + "}"

    def sub(self, text, extra):
        def one(match):
            name = match.group(1)
            if name in extra:
                return str(extra[name])
            if "." in name and not name.startswith("AWS::"):
                return "{" + name + "}"
            value = self.ref(name)
            assert isinstance(value, str), f"${{{name}}} is not a string"
            return value

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(self, node):
        if isinstance(node, list):
            out = [self.value(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return "{" + f"{name}.{attribute}" + "}"
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, mapping = arg
                return self.sub(text, {k: self.value(v) for k, v in mapping.items()})
            if key == "Fn::If":
                name, yes, no = arg
                return self.value(yes if self.condition(name) else no)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(self.value(items))
            if key == "Fn::Split":
                sep, text = arg
                return self.value(text).split(sep)
            if key == "Fn::Select":
                index, items = arg
                return self.value(items)[int(self.value(index))]
            if key == "Fn::Equals":
                a, b = (self.value(v) for v in arg)
                return a == b
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(v) for v in arg)
            if key == "Fn::Or":
                return any(self.value(v) for v in arg)
            if key == "Condition":
                return self.condition(arg)
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def props(self, name):
        assert name in self.resources, f"{name} is not created with these parameters"
        return self.resources[name].get("Properties", {})

    def of_type(self, kind):
        return {n: r for n, r in self.resources.items() if r["Type"] == kind}

    def container(self, name):
        for c in self.props("TaskDefinition")["ContainerDefinitions"]:
            if c["Name"] == name:
                return c
        return None

    def environment(self, container="lakeworker"):
        return {e["Name"]: e["Value"] for e in self.container(container).get("Environment", [])}

    def role_statements(self, role):
        return [
            st
            for policy in self.props(role).get("Policies", [])
            for st in policy["PolicyDocument"]["Statement"]
        ]


def listed(value):
    return value if isinstance(value, list) else [value]


def glob(pattern, value):
    regex = "^" + ".*".join(map(re.escape, pattern.split("*"))) + "$"
    return re.match(regex.replace(r"\?", "."), value) is not None


def arn_like(pattern, value):
    """IAM's ArnLike: each of the six colon-separated parts matched on its own, so a `*`
    never reaches across a colon. Placeholders (`{TaskRole.Arn}`) compare as strings."""
    if not (pattern.startswith("arn:") and value.startswith("arn:")):
        return glob(pattern, value)
    want, have = pattern.split(":", 5), value.split(":", 5)
    return len(want) == len(have) == 6 and all(map(glob, want, have))


def condition_holds(operator, key, wanted, context):
    present = key in context
    actual = context.get(key)
    wanted = [str(w) for w in listed(wanted)]
    if operator == "ArnLike":
        return present and any(arn_like(w, actual) for w in wanted)
    if operator == "ArnNotLike":
        return not present or not any(arn_like(w, actual) for w in wanted)
    if operator in ("StringEquals", "ArnEquals"):
        return present and actual in wanted
    if operator == "Bool":
        return present and str(actual).lower() in [w.lower() for w in wanted]
    raise AssertionError(f"operator {operator} not modelled")


def statement_applies(st, action, resource, context):
    if not any(glob(a, action) for a in listed(st["Action"])):
        return False
    if not any(glob(r, resource) for r in listed(st["Resource"])):
        return False
    principal = st.get("Principal")
    if principal != "*":
        names = [context.get("principal")] + [context.get("service")]
        named = listed(principal.get("AWS", [])) + listed(principal.get("Service", []))
        is_aws_principal = context.get("principal") is not None
        if not (("*" in listed(principal.get("AWS", [])) and is_aws_principal)
                or any(n in names for n in named if n)):
            return False
    return all(
        condition_holds(op, key, wanted, context)
        for op, keys in st.get("Condition", {}).items()
        for key, wanted in keys.items()
    )


def grants(statements, action, resource):
    """Whether identity-policy statements allow the action on the resource."""
    return any(
        st["Effect"] == "Allow"
        and any(glob(a, action) for a in listed(st["Action"]))
        and any(glob(r, resource) for r in listed(st["Resource"]))
        for st in statements
    )


def allows(policy, action, resource, context):
    """Whether a resource policy alone lets the request through: an explicit Deny wins,
    then it needs an Allow (or, with identity=True in the context, the caller's own IAM
    policy grants it, which a same-account resource policy does not have to)."""
    context = {"aws:SecureTransport": "true", **context}
    statements = policy["Statement"]
    if any(
        st["Effect"] == "Deny" and statement_applies(st, action, resource, context)
        for st in statements
    ):
        return False
    return context.get("identity", False) or any(
        st["Effect"] == "Allow" and statement_applies(st, action, resource, context)
        for st in statements
    )


def role(name):
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


class AlarmsNotify(unittest.TestCase):
    def test_the_topic_key_is_one_cloudwatch_may_use(self):
        r = Renderer(load())
        key_id = r.props("AlarmTopic")["KmsMasterKeyId"]
        self.assertNotIn("alias/aws/", key_id)
        self.assertEqual(key_id, "{AlarmTopicKey.Arn}")
        policy = r.props("AlarmTopicKey")["KeyPolicy"]
        cloudwatch = {"service": "cloudwatch.amazonaws.com"}
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            self.assertTrue(allows(policy, action, "*", cloudwatch), action)
        self.assertTrue(r.props("AlarmTopicKey")["EnableKeyRotation"])

    def test_a_given_key_replaces_the_stacks_own(self):
        given = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        r = Renderer(load(), AlarmTopicKmsKeyArn=given)
        self.assertEqual(r.props("AlarmTopic")["KmsMasterKeyId"], given)
        self.assertNotIn("AlarmTopicKey", r.resources)

    def test_cloudwatch_alarms_of_this_account_may_publish(self):
        r = Renderer(load())
        policy = r.props("AlarmTopicPolicy")["PolicyDocument"]
        alarm = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:x"
        ours = {"service": "cloudwatch.amazonaws.com", "aws:SourceArn": alarm,
                "aws:SourceAccount": ACCOUNT}
        theirs = {"service": "cloudwatch.amazonaws.com",
                  "aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:999999999999:alarm:x",
                  "aws:SourceAccount": "999999999999"}
        self.assertTrue(allows(policy, "sns:Publish", "{AlarmTopic}", ours))
        self.assertFalse(allows(policy, "sns:Publish", "{AlarmTopic}", theirs))

    def test_every_alarm_but_the_scaling_one_notifies_the_topic(self):
        r = Renderer(load())
        alarms = r.of_type("AWS::CloudWatch::Alarm")
        self.assertGreaterEqual(len(alarms), 4)
        for name, alarm in alarms.items():
            actions = alarm["Properties"]["AlarmActions"]
            if name == "ScaleFromZeroAlarm":
                self.assertEqual(actions, ["{ScaleFromZeroPolicy}"])
                continue
            self.assertIn("{AlarmTopic}", actions, name)
            self.assertIn("{AlarmTopic}", alarm["Properties"]["OKActions"], name)

    def test_an_email_subscribes_to_the_topic(self):
        r = Renderer(load(), AlarmEmail="oncall@example.com")
        sub = r.props("AlarmEmailSubscription")
        self.assertEqual((sub["TopicArn"], sub["Endpoint"]), ("{AlarmTopic}", "oncall@example.com"))


class WhoMaySend(unittest.TestCase):
    QUEUE = "{LandingQueue.Arn}"

    def policy(self, **params):
        r = Renderer(load(), **params)
        return r.props("LandingQueuePolicy")["PolicyDocument"]

    def may_send(self, policy, **context):
        return allows(policy, "sqs:SendMessage", self.QUEUE, context)

    def s3(self, bucket):
        return {"service": "s3.amazonaws.com", "aws:SourceArn": f"arn:aws:s3:::{bucket}",
                "aws:SourceAccount": ACCOUNT}

    def test_the_landing_bucket_and_the_task_role_may_and_no_one_else(self):
        policy = self.policy()
        self.assertTrue(self.may_send(policy, **self.s3(LANDING)))
        self.assertFalse(self.may_send(policy, **self.s3("some-other-bucket")))
        # The task role's own policy grants the send (backfill, redrive) ...
        own = Renderer(load()).role_statements("TaskRole")
        self.assertTrue(grants(own, "sqs:SendMessage", self.QUEUE))
        task = {"principal": "{TaskRole.Arn}", "aws:PrincipalArn": "{TaskRole.Arn}",
                "identity": True}
        # ... and the queue policy does not deny it.
        self.assertTrue(self.may_send(policy, **task))
        # An admin of the account whose own policy grants sqs:* is refused all the same.
        admin = {"principal": role("Admin"), "aws:PrincipalArn": role("Admin"),
                 "identity": True}
        self.assertFalse(self.may_send(policy, **admin))
        # Neither an SNS topic nor an EventBridge rule nobody named.
        topic = {"service": "sns.amazonaws.com",
                 "aws:SourceArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:anything"}
        self.assertFalse(self.may_send(policy, **topic))
        # Receiving is not restricted here (the task role's identity policy grants it).
        self.assertTrue(allows(policy, "sqs:ReceiveMessage", self.QUEUE, admin))

    def test_named_producers_topics_and_rules_may(self):
        topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:uploads"
        rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/s3-created"
        policy = self.policy(
            ProducerRoleArns=f"{role('signup-api')},{role('crm-sync')}",
            SnsTopicArns=topic,
            EventBridgeRuleArns=rule,
        )
        for name in ("signup-api", "crm-sync"):
            self.assertTrue(self.may_send(policy, principal=role(name),
                                          **{"aws:PrincipalArn": role(name)}), name)
        self.assertFalse(self.may_send(policy, principal=role("other"),
                                       **{"aws:PrincipalArn": role("other")}))
        self.assertTrue(self.may_send(policy, service="sns.amazonaws.com",
                                      **{"aws:SourceArn": topic}))
        self.assertFalse(self.may_send(policy, service="sns.amazonaws.com",
                                       **{"aws:SourceArn": topic + "-2"}))
        self.assertTrue(self.may_send(policy, service="events.amazonaws.com",
                                      **{"aws:SourceArn": rule}))
        self.assertTrue(self.may_send(policy, **self.s3(LANDING)))
        self.assertTrue(self.may_send(policy, principal="{TaskRole.Arn}", identity=True,
                                      **{"aws:PrincipalArn": "{TaskRole.Arn}"}))

    def test_an_existing_landing_bucket_is_the_one_allowed(self):
        policy = self.policy(ExistingLandingBucket="their-landing")
        self.assertTrue(self.may_send(policy, **self.s3("their-landing")))
        self.assertFalse(self.may_send(policy, **self.s3(LANDING)))

    def test_the_worker_refuses_other_sns_topics(self):
        topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:uploads"
        env = Renderer(load(), SnsTopicArns=topic).environment()
        self.assertEqual(env["LAKEWORKER__QUEUE__ALLOWED_TOPIC_ARNS"], topic)
        self.assertNotIn("LAKEWORKER__QUEUE__ALLOWED_TOPIC_ARNS", Renderer(load()).environment())

    def test_both_queues_refuse_plain_http(self):
        r = Renderer(load())
        plain = {"aws:SecureTransport": "false", "principal": "{TaskRole.Arn}",
                 "aws:PrincipalArn": "{TaskRole.Arn}", "identity": True}
        for name, queue in (("LandingQueuePolicy", self.QUEUE),
                            ("DeadLetterQueuePolicy", "{DeadLetterQueue.Arn}")):
            policy = r.props(name)["PolicyDocument"]
            self.assertEqual(r.props(name)["Queues"][0], "{" + queue[1:-5] + "}")
            self.assertFalse(allows(policy, "sqs:ReceiveMessage", queue, plain), name)
            secure = {**plain, "aws:SecureTransport": "true"}
            self.assertTrue(allows(policy, "sqs:ReceiveMessage", queue, secure), name)


class LeastPrivilege(unittest.TestCase):
    def statements(self, **params):
        return Renderer(load(), **params).role_statements("TaskRole")

    def resources_of(self, statements, action):
        return sorted(r for st in statements if action in listed(st["Action"])
                      for r in listed(st["Resource"]))

    def test_kms_only_on_the_keys_in_use(self):
        self.assertEqual(self.resources_of(self.statements(), "kms:Decrypt"), ["{DataKey.Arn}"])
        theirs = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000aaaa-0000-0000-0000-000000000000"
        given = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111bbbb-0000-0000-0000-000000000000"
        statements = self.statements(DataKmsKeyArn=given, ExistingBucketKmsKeyArns=theirs)
        self.assertEqual(self.resources_of(statements, "kms:GenerateDataKey"),
                         sorted([given, theirs]))
        for st in statements:
            for resource in listed(st["Resource"]):
                self.assertFalse(resource.endswith(":key/*"), st)
            if any(a.startswith("kms:") for a in listed(st["Action"])):
                self.assertEqual(st["Condition"]["StringEquals"]["kms:ViaService"],
                                 f"s3.{REGION}.amazonaws.com")

    def test_the_data_key_serves_this_account_through_s3_only(self):
        policy = Renderer(load()).props("DataKey")["KeyPolicy"]
        through_s3 = {"principal": role("uploader"), "kms:CallerAccount": ACCOUNT,
                      "kms:ViaService": f"s3.{REGION}.amazonaws.com"}
        self.assertTrue(allows(policy, "kms:GenerateDataKey", "*", through_s3))
        self.assertTrue(allows(policy, "kms:Decrypt", "*", through_s3))
        direct = {k: v for k, v in through_s3.items() if k != "kms:ViaService"}
        self.assertFalse(allows(policy, "kms:Decrypt", "*", direct))
        other = {**through_s3, "kms:CallerAccount": "999999999999",
                 "principal": "arn:aws:iam::999999999999:role/x"}
        self.assertFalse(allows(policy, "kms:Decrypt", "*", other))

    def test_the_stacks_buckets_use_the_data_key(self):
        r = Renderer(load(), SeparateQuarantineBucket="true")
        for bucket in ("LandingBucket", "LakeBucket", "QuarantineBucket"):
            rule = r.props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            self.assertEqual(rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"],
                             "{DataKey.Arn}", bucket)

    def test_writes_only_under_the_prefixes_the_worker_writes(self):
        statements = self.statements(
            LakePrefix="tables", RawPrefix="originals", QuarantinePrefix="bad",
            CatalogDatabase="lake", CatalogOutputLocation="s3://athena-results/lakeworker/",
        )
        writes = self.resources_of(statements, "s3:PutObject")
        self.assertEqual(writes, sorted([
            "arn:aws:s3:::{LakeBucket}/tables/*",
            "arn:aws:s3:::{LakeBucket}/originals/*",
            "arn:aws:s3:::{LakeBucket}/bad/*",
            "arn:aws:s3:::athena-results/lakeworker/*",
        ]))
        for action in ("s3:DeleteObject", "s3:AbortMultipartUpload"):
            for resource in self.resources_of(statements, action):
                self.assertRegex(resource, r"^arn:aws:s3:::[^/]+/.+/\*$", action)
        # The landing bucket is only read (and deleted from only with DeleteLandingAfter).
        self.assertEqual(self.resources_of(statements, "s3:DeleteObjectVersion"), [])

    def test_a_separate_quarantine_bucket_gets_only_the_quarantine_prefix(self):
        writes = self.resources_of(self.statements(SeparateQuarantineBucket="true", RawPrefix=""),
                                   "s3:PutObject")
        self.assertEqual(writes, sorted([
            "arn:aws:s3:::{LakeBucket}/curated/*",
            "arn:aws:s3:::{QuarantineBucket}/quarantine/*",
        ]))

    def test_the_worker_is_told_the_prefixes_it_may_write(self):
        env = Renderer(load(), LakePrefix="tables", QuarantinePrefix="bad").environment()
        self.assertEqual(env["LAKEWORKER__LAKE__PREFIX"], "tables")
        self.assertEqual(env["LAKEWORKER__LAKE__QUARANTINE_PREFIX"], "bad")
        self.assertEqual(env["LAKEWORKER__LAKE__RAW_PREFIX"], "raw")

    def test_no_statement_grants_everything(self):
        r = Renderer(load(), CatalogDatabase="lake", PiiSaltSecretArn=SECRET)
        for role_name in ("TaskRole", "ExecutionRole"):
            for st in r.role_statements(role_name):
                self.assertFalse(any(a.endswith("*") for a in listed(st["Action"])), st)
                if st["Resource"] == "*":
                    self.assertTrue(all(a.startswith("xray:") for a in listed(st["Action"])), st)


class Evaluator(unittest.TestCase):
    """The policy evaluator itself, so a property test cannot pass by its fault."""

    def test_arn_like_matches_part_by_part(self):
        self.assertTrue(arn_like("arn:aws:s3:::bucket", "arn:aws:s3:::bucket"))
        self.assertTrue(arn_like("arn:aws:cloudwatch:eu-west-1:1:alarm:*",
                                 "arn:aws:cloudwatch:eu-west-1:1:alarm:a"))
        # A * in one part does not swallow a colon into the next.
        self.assertFalse(arn_like("arn:aws:sns:*", "arn:aws:sns:eu-west-1:1:topic"))
        self.assertTrue(arn_like("arn:aws:sns:*:*:*", "arn:aws:sns:eu-west-1:1:topic"))
        self.assertFalse(arn_like("arn:aws:s3:::bucket", "arn:aws:s3:::bucket-2"))

    def test_a_deny_wins_and_an_allow_is_needed(self):
        policy = {"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "a"}, "Action": "x:Do", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "x:*", "Resource": "*",
             "Condition": {"ArnNotLike": {"aws:PrincipalArn": ["a"], "aws:SourceArn": ["s"]}}},
        ]}
        self.assertTrue(allows(policy, "x:Do", "r", {"principal": "a", "aws:PrincipalArn": "a"}))
        self.assertFalse(allows(policy, "x:Do", "r", {"principal": "b", "aws:PrincipalArn": "b",
                                                      "identity": True}))
        # Both conditions must hold for the Deny: a listed source escapes it.
        self.assertTrue(allows(policy, "x:Do", "r", {"aws:SourceArn": "s", "identity": True}))
        self.assertFalse(allows(policy, "x:Do", "r", {"aws:SourceArn": "t"}))


class Parameters(unittest.TestCase):
    def pattern(self, name):
        return load()["Parameters"][name]["AllowedPattern"]

    def test_the_secret_arn_is_the_full_one_iam_can_match(self):
        pattern = self.pattern("PiiSaltSecretArn")
        for good in ("", SECRET, PARAMETER):
            self.assertRegex(good, pattern)
        for bad in (SECRET[:-7], SECRET + ":salt::", "lakeworker/pii-salt",
                    f"arn:aws:kms:{REGION}:{ACCOUNT}:key/x"):
            self.assertNotRegex(bad, pattern)

    def test_key_parameters_take_single_and_multi_region_keys(self):
        for name in ("DataKmsKeyArn", "AlarmTopicKmsKeyArn", "PiiSaltKmsKeyArn"):
            pattern = self.pattern(name)
            self.assertRegex(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab", pattern)
            self.assertRegex(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab", pattern)
            self.assertNotRegex("alias/aws/sns", pattern)

    def test_rules_refuse_what_would_break_the_stack(self):
        self.assertEqual(Renderer(load()).broken_rules(), [])
        catalog = Renderer(load(), CatalogDatabase="lake").broken_rules()
        self.assertEqual(len(catalog), 1)
        self.assertIn("CatalogOutputLocation", catalog[0])
        self.assertEqual(Renderer(load(), CatalogDatabase="lake",
                                  CatalogOutputLocation="s3://r/x/").broken_rules(), [])
        same = Renderer(load(), QuarantinePrefix="curated").broken_rules()
        self.assertTrue(any("QuarantinePrefix" in b for b in same), same)
        self.assertTrue(Renderer(load(), RawPrefix="quarantine").broken_rules())


SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lakeworker/pii-salt-AbCdEf"
PARAMETER = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/lakeworker/pii-salt"


class Secrets(unittest.TestCase):
    def test_the_salt_comes_from_the_secret_and_only_that_secret_is_readable(self):
        for arn, action in ((SECRET, "secretsmanager:GetSecretValue"),
                            (PARAMETER, "ssm:GetParameters")):
            r = Renderer(load(), PiiSaltSecretArn=arn)
            worker = r.container("lakeworker")
            self.assertEqual(worker["Secrets"], [{"Name": "LAKEWORKER_PII_SALT", "ValueFrom": arn}])
            self.assertNotIn("LAKEWORKER_PII_SALT", r.environment())
            statements = r.role_statements("ExecutionRole")
            self.assertEqual([(st["Action"], st["Resource"]) for st in statements],
                             [(action, arn)])
            # The task role (the worker's own credentials) cannot read it.
            for st in r.role_statements("TaskRole"):
                self.assertFalse(any(a.startswith(("secretsmanager:", "ssm:"))
                                     for a in listed(st["Action"])), st)

    def test_a_customer_managed_key_of_the_secret_is_granted_too(self):
        key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/2222cccc-0000-0000-0000-000000000000"
        r = Renderer(load(), PiiSaltSecretArn=SECRET, PiiSaltKmsKeyArn=key)
        grants = [(st["Action"], st["Resource"]) for st in r.role_statements("ExecutionRole")]
        self.assertIn(("kms:Decrypt", key), grants)

    def test_no_salt_no_secret(self):
        r = Renderer(load())
        self.assertNotIn("Secrets", r.container("lakeworker"))
        self.assertEqual(r.role_statements("ExecutionRole"), [])

    def test_no_secret_looking_value_in_any_environment(self):
        r = Renderer(load(), PiiSaltSecretArn=SECRET)
        for c in r.props("TaskDefinition")["ContainerDefinitions"]:
            for e in c.get("Environment", []):
                self.assertNotRegex(e["Name"], "SALT|SECRET|PASSWORD|TOKEN", c["Name"])


def emitted_metrics():
    """Instrument names and attribute keys from src/metrics.rs, the outcome values from
    the worker events' outcome_name (plus `received`), the other attribute values from the
    calls that record them."""
    metrics = METRICS_RS.read_text()
    names = set(re.findall(r'_(?:counter|histogram|up_down_counter|observable_gauge|gauge)\("([a-z_.]+)"\)', metrics))
    events = EVENTS_RS.read_text()
    body = events[events.index("fn outcome_name"):]
    body = body[: body.index("\n}\n")]
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.rs"))
    values = {
        "outcome": set(re.findall(r'=> "([a-z0-9_]+)"', body)) | {"received"},
        "kind": set(re.findall(r'\("([a-z0-9_]+)", (?:read|written|quarantined)\)', metrics)),
        "direction": set(re.findall(r'\.bytes\([^,]+, "([a-z0-9_]+)"', source)),
        "via": set(re.findall(r'dead_letter\("([a-z0-9_]+)"\)', source))
        | set(re.findall(r'Step::\w+ => "([a-z0-9_]+)"', source)),
    }
    return names, values


class Dashboard(unittest.TestCase):
    def setUp(self):
        self.r = Renderer(load())
        self.body = json.loads(self.r.props("Dashboard")["DashboardBody"])
        self.metrics = [
            m for w in self.body["widgets"] if w["type"] == "metric"
            for m in w["properties"]["metrics"]
        ]

    def series(self, namespace):
        out = []
        for m in self.metrics:
            parts = [p for p in m if not isinstance(p, dict)]
            if parts[0] == namespace:
                out.append((parts[1], dict(zip(parts[2::2], parts[3::2]))))
        return out

    def test_the_worker_metrics_are_ones_the_worker_emits(self):
        names, values = emitted_metrics()
        self.assertGreaterEqual(len(names), 8)
        series = self.series("lakeworker/lakeworker")
        self.assertTrue(series)
        for name, dims in series:
            self.assertIn(name, names)
            for key, value in dims.items():
                self.assertIn(value, values[key], (name, key))
        shown = {name for name, _ in series}
        for wanted in ("lakeworker.messages", "lakeworker.rows", "lakeworker.bytes",
                       "lakeworker.message.duration", "lakeworker.visibility.extensions",
                       "lakeworker.in_flight"):
            self.assertIn(wanted, shown)
        outcomes = {d["outcome"] for n, d in series if n == "lakeworker.messages"}
        self.assertEqual(outcomes, values["outcome"])
        vias = {d["via"] for n, d in series if n == "lakeworker.dead_letters"}
        self.assertEqual(vias, values["via"])
        kinds = {d["kind"] for n, d in series if n == "lakeworker.rows"}
        self.assertEqual(kinds, {"read", "written", "quarantined"})

    def test_the_queue_the_dlq_and_the_tasks(self):
        sqs = self.series("AWS/SQS")
        self.assertIn(("ApproximateNumberOfMessagesVisible", {"QueueName": "{LandingQueue.QueueName}"}), sqs)
        self.assertIn(("ApproximateAgeOfOldestMessage", {"QueueName": "{LandingQueue.QueueName}"}), sqs)
        self.assertIn(("ApproximateNumberOfMessagesVisible", {"QueueName": "{DeadLetterQueue.QueueName}"}), sqs)
        self.assertIn(("RunningTaskCount", {"ClusterName": "{Cluster}", "ServiceName": "{Service.Name}"}),
                      self.series("ECS/ContainerInsights"))
        existing = Renderer(load(), ExistingQueueName="q", ExistingDeadLetterQueueName="dlq")
        body = existing.props("Dashboard")["DashboardBody"]
        self.assertIn('"QueueName","q"', body)
        self.assertIn('"QueueName","dlq"', body)

    def test_the_collector_exports_what_the_dashboard_shows(self):
        worker = self.r.environment()
        self.assertEqual(worker["LAKEWORKER__TELEMETRY__OTLP_ENDPOINT"], "http://127.0.0.1:4318")
        self.assertFalse(self.r.container("otel-collector")["Essential"])
        config = yaml.safe_load(self.r.environment("otel-collector")["AOT_CONFIG_CONTENT"])
        self.assertEqual(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
                         "127.0.0.1:4318")
        emf = config["exporters"]["awsemf"]
        self.assertEqual(emf["namespace"], "lakeworker/lakeworker")
        self.assertEqual(emf["log_group_name"], self.r.props("MetricsLogGroup")["LogGroupName"])
        self.assertIn("awsemf", config["service"]["pipelines"]["metrics"]["exporters"])
        # Deltas from the worker: the exporter would turn cumulative histograms into
        # lifetime averages (and up-down counters into changes, hence in_flight's gauge).
        self.assertEqual(worker["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"], "delta")
        self.assertIn("i64_observable_gauge(\"lakeworker.in_flight\")", METRICS_RS.read_text())
        self.assertTrue(emf["retain_initial_value_of_delta_metric"])
        # Every instrument whose OpenTelemetry unit CloudWatch does not know gets one.
        units = {d["metric_name"]: d["unit"] for d in emf["metric_descriptors"]}
        declared = dict(re.findall(r'\("(lakeworker\.[a-z_.]+)"\)\s*\.with_unit\("([^"]+)"\)',
                                   METRICS_RS.read_text()))
        self.assertGreaterEqual(len(declared), 8)
        for name, unit in declared.items():
            if unit.startswith("{"):
                self.assertEqual(units.get(name), "Count", name)
            elif unit == "By":
                self.assertEqual(units.get(name), "Bytes", name)
        for name, dims in self.series("lakeworker/lakeworker"):
            declared = [
                d for decl in emf["metric_declarations"]
                if any(re.search(sel, name) for sel in decl["metric_name_selectors"])
                for d in decl["dimensions"]
            ]
            self.assertIn(sorted(dims), [sorted(d) for d in declared], name)
        # The DLQ-refusal metric filter shares the namespace.
        namespaces = {t["MetricNamespace"] for t in
                      self.r.props("DeadLetterKeptOnlyFilter")["MetricTransformations"]}
        self.assertEqual(namespaces, {"lakeworker/lakeworker"})

    def test_without_the_sidecar_no_collector_and_no_endpoint(self):
        r = Renderer(load(), MetricsSidecar="false")
        self.assertIsNone(r.container("otel-collector"))
        self.assertNotIn("LAKEWORKER__TELEMETRY__OTLP_ENDPOINT", r.environment())
        self.assertNotIn("MetricsLogGroup", r.resources)
        for sidecar in ("false", "true"):
            mine = Renderer(load(), MetricsSidecar=sidecar, OtlpEndpoint="http://collector:4318")
            self.assertEqual(mine.environment()["LAKEWORKER__TELEMETRY__OTLP_ENDPOINT"],
                             "http://collector:4318")
            # Their collector, their temporality; no idle sidecar.
            self.assertIsNone(mine.container("otel-collector"))
            self.assertNotIn("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", mine.environment())

    def test_the_alarm_widget_lists_every_notifying_alarm(self):
        alarms = [w for w in self.body["widgets"] if w["type"] == "alarm"][0]
        notifying = {n for n, a in self.r.of_type("AWS::CloudWatch::Alarm").items()
                     if "{AlarmTopic}" in a["Properties"]["AlarmActions"]}
        self.assertEqual({a[1:-5] for a in alarms["properties"]["alarms"]}, notifying)


if __name__ == "__main__":
    unittest.main()
